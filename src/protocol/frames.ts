/**
 * Framing (PROTOCOL.md §3). After the handshake every message travels in a
 * frame: a little-endian int32 length, then that many body bytes. The length
 * is checked against MaxMessageSize before a byte of the body is buffered.
 *
 * In AES mode the body is AES-CBC/PKCS#7 ciphertext of `nextIV(16) ‖ message`
 * under the current IV of that direction; the next frame in the same
 * direction uses `nextIV`. The first frame of each direction uses the
 * handshake IV. Any failure to decrypt is the one error DECRYPT_FAILED.
 *
 * Decoders are incremental: `push()` takes chunks of any size and returns the
 * whole messages they complete. Node's crypto is used (no I/O).
 */
import { type Cipher, createCipheriv, createDecipheriv, type Decipher, randomFillSync } from 'node:crypto';
import { AES_BLOCK, AES_IV_SIZE, DEFAULT_MAX_MESSAGE_SIZE, FRAME_HEADER_SIZE } from './constants.js';
import { ProtocolError } from './errors.js';

export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  h.writeInt32LE(length, 0);
  return h;
}

/** Frames one plain message (copying it after the header). */
export function encodePlainFrame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + message.length);
  out.writeInt32LE(message.length, 0);
  out.set(message, FRAME_HEADER_SIZE);
  return out;
}

/**
 * Reassembles length-prefixed frames from arbitrary chunks. Frames that sit
 * wholly inside one chunk are returned as views (no copy).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // body length of the frame in progress, -1 while reading the header
  readonly maxSize: number;
  private failed: ProtocolError | null = null;

  constructor(maxSize = DEFAULT_MAX_MESSAGE_SIZE) {
    this.maxSize = maxSize;
  }

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.buffered;
  }

  protected checkLength(len: number): void {
    if (len < 1) throw new ProtocolError('BAD_VALUE', `frame length ${len} is not positive`);
    if (len > this.maxSize)
      throw new ProtocolError('LENGTH_LIMIT', `frame length ${len} exceeds the limit of ${this.maxSize}`);
  }

  /** Transforms a whole frame body into the message (identity for plain). */
  protected open(body: Buffer): Buffer {
    return body;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  push(chunk: Uint8Array): Buffer[] {
    if (this.failed) throw this.failed;
    const out: Buffer[] = [];
    if (chunk.length > 0) {
      this.chunks.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
      this.buffered += chunk.length;
    }
    try {
      for (;;) {
        if (this.need < 0) {
          if (this.buffered < FRAME_HEADER_SIZE) break;
          const len = this.take(FRAME_HEADER_SIZE).readInt32LE(0);
          this.checkLength(len);
          this.need = len;
        }
        if (this.buffered < this.need) break;
        const body = this.take(this.need);
        this.need = -1;
        out.push(this.open(body));
      }
    } catch (err) {
      this.failed =
        err instanceof ProtocolError ? err : new ProtocolError('BAD_VALUE', `frame error: ${String(err)}`);
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return out;
  }
}

export function aesAlgorithm(key: Uint8Array): string {
  if (key.length !== 16 && key.length !== 24 && key.length !== 32)
    throw new ProtocolError('BAD_VALUE', `AES key must be 16, 24 or 32 bytes, got ${key.length}`);
  return `aes-${key.length * 8}-cbc`;
}

/** Parses an AES key written as 32, 48 or 64 hex digits. Returns null if malformed. */
export function parseAesKeyHex(hex: string): Buffer | null {
  const t = hex.trim();
  if (!/^[0-9a-fA-F]+$/.test(t) || (t.length !== 32 && t.length !== 48 && t.length !== 64)) return null;
  return Buffer.from(t, 'hex');
}

/** Messages up to this size are encrypted from one plaintext buffer into one frame buffer. */
const AES_SMALL_MESSAGE = 16 * 1024;
/** Random bytes drawn at once for the per-frame IVs. */
const IV_POOL_SIZE = 4096;

/** XORs three 16-byte blocks into a new one. */
function xor3(a: Uint8Array, b: Uint8Array, c: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(AES_BLOCK);
  for (let i = 0; i < AES_BLOCK; i++) out[i] = a[i]! ^ b[i]! ^ c[i]!;
  return out;
}

/**
 * Encrypts outgoing frames for one direction.
 *
 * Every frame is CBC under its own IV, but creating a cipher per frame costs
 * more than encrypting a small message. So one CBC cipher (no auto padding)
 * runs for the whole connection, and each frame's first plaintext block is
 * XORed with `frameIv ⊕ chain`, where `chain` is the cipher's running CBC
 * state (the last ciphertext block it produced): the cipher then computes
 * `E(p1 ⊕ frameIv)`, exactly what a fresh cipher with IV `frameIv` would.
 * PKCS#7 padding is added by hand. The bytes on the wire are those of a fresh
 * `createCipheriv` per frame (tests check both against each other).
 */
export class AesFrameEncoder {
  private iv: Buffer;
  private chain: Buffer;
  private readonly cipher: Cipher;
  private pool: Buffer = Buffer.alloc(0);
  private poolOffset = 0;

  constructor(key: Uint8Array, handshakeIv: Uint8Array) {
    const algorithm = aesAlgorithm(key);
    if (handshakeIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
    this.iv = Buffer.from(handshakeIv);
    this.chain = this.iv;
    this.cipher = createCipheriv(algorithm, key, handshakeIv).setAutoPadding(false);
  }

  /** Ciphertext length for a message of `n` bytes. */
  static bodyLength(n: number): number {
    return (Math.floor((AES_IV_SIZE + n) / AES_BLOCK) + 1) * AES_BLOCK;
  }

  private randomIv(): Buffer {
    if (this.poolOffset + AES_IV_SIZE > this.pool.length) {
      this.pool = randomFillSync(Buffer.allocUnsafe(IV_POOL_SIZE));
      this.poolOffset = 0;
    }
    const iv = this.pool.subarray(this.poolOffset, this.poolOffset + AES_IV_SIZE);
    this.poolOffset += AES_IV_SIZE;
    return iv;
  }

  /**
   * Encrypts one message and returns the frame as buffers to write in order
   * (header, then ciphertext; large messages are not copied). `nextIv` is
   * random unless given (tests use fixed ones for vectors).
   */
  encodePieces(message: Uint8Array, nextIv?: Uint8Array): Buffer[] {
    const next = nextIv ?? this.randomIv();
    if (next.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'next IV must be 16 bytes');
    const bodyLen = AesFrameEncoder.bodyLength(message.length);
    const padLen = bodyLen - AES_IV_SIZE - message.length;
    const first = xor3(next, this.iv, this.chain);
    let pieces: Buffer[];
    if (message.length <= AES_SMALL_MESSAGE) {
      const plain = Buffer.allocUnsafe(FRAME_HEADER_SIZE + bodyLen);
      plain.writeInt32LE(bodyLen, 0);
      first.copy(plain, FRAME_HEADER_SIZE);
      plain.set(message, FRAME_HEADER_SIZE + AES_IV_SIZE);
      plain.fill(padLen, FRAME_HEADER_SIZE + AES_IV_SIZE + message.length);
      const body = this.cipher.update(plain.subarray(FRAME_HEADER_SIZE));
      body.copy(plain, FRAME_HEADER_SIZE);
      pieces = [plain];
      this.chain = body.subarray(bodyLen - AES_BLOCK);
    } else {
      const c1 = this.cipher.update(first);
      const c2 = this.cipher.update(message);
      const c3 = this.cipher.update(Buffer.alloc(padLen, padLen));
      /* c8 ignore next 2 */
      if (c1.length + c2.length + c3.length !== bodyLen)
        throw new ProtocolError('BAD_VALUE', 'internal: AES length mismatch');
      pieces = [frameHeader(bodyLen), c1, c2, c3];
      this.chain = Buffer.from(c3.subarray(c3.length - AES_BLOCK));
    }
    this.iv = Buffer.from(next);
    return pieces;
  }

  /** Encrypts one message and returns the whole frame (header + ciphertext) in one buffer. */
  encode(message: Uint8Array, nextIv?: Uint8Array): Buffer {
    const pieces = this.encodePieces(message, nextIv);
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }
}

/**
 * Decrypts incoming frames for one direction, with one CBC decipher for the
 * connection (see `AesFrameEncoder`): the first plaintext block of a frame is
 * corrected by `chain ⊕ frameIv`, and the PKCS#7 padding is checked and cut
 * by hand, so a frame costs one decryption into one buffer and no copy.
 */
export class AesFrameDecoder extends FrameDecoder {
  private iv: Buffer;
  private chain: Buffer;
  private readonly decipher: Decipher;

  constructor(key: Uint8Array, handshakeIv: Uint8Array, maxSize = DEFAULT_MAX_MESSAGE_SIZE) {
    super(maxSize);
    const algorithm = aesAlgorithm(key);
    if (handshakeIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
    this.iv = Buffer.from(handshakeIv);
    this.chain = this.iv;
    this.decipher = createDecipheriv(algorithm, key, handshakeIv).setAutoPadding(false);
  }

  protected override checkLength(len: number): void {
    super.checkLength(len);
    if (len % AES_BLOCK !== 0 || len < AES_IV_SIZE + AES_BLOCK)
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
  }

  protected override open(body: Buffer): Buffer {
    let plain: Buffer;
    try {
      plain = this.decipher.update(body);
    } catch {
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    }
    if (plain.length !== body.length) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    const pad = plain[plain.length - 1]!;
    if (pad < 1 || pad > AES_BLOCK) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    for (let i = plain.length - pad; i < plain.length - 1; i++)
      if (plain[i] !== pad) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    // plain[0..16] is D(c1) ⊕ chain; the sender meant D(c1) ⊕ iv.
    const next = xor3(plain.subarray(0, AES_BLOCK), this.chain, this.iv);
    this.chain = Buffer.from(body.subarray(body.length - AES_BLOCK));
    this.iv = next;
    return plain.subarray(AES_IV_SIZE, plain.length - pad);
  }
}
