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
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
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

/** Encrypts outgoing frames for one direction. */
export class AesFrameEncoder {
  private iv: Buffer;
  private readonly key: Buffer;
  private readonly algorithm: string;

  constructor(key: Uint8Array, handshakeIv: Uint8Array) {
    this.key = Buffer.from(key);
    this.algorithm = aesAlgorithm(key);
    if (handshakeIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
    this.iv = Buffer.from(handshakeIv);
  }

  /** Ciphertext length for a message of `n` bytes. */
  static bodyLength(n: number): number {
    return (Math.floor((AES_IV_SIZE + n) / AES_BLOCK) + 1) * AES_BLOCK;
  }

  /**
   * Encrypts one message and returns the whole frame (header + ciphertext).
   * `nextIv` is random unless given (tests use fixed ones for vectors).
   */
  encode(message: Uint8Array, nextIv: Uint8Array = randomBytes(AES_IV_SIZE)): Buffer {
    if (nextIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'next IV must be 16 bytes');
    const cipher = createCipheriv(this.algorithm, this.key, this.iv);
    const bodyLen = AesFrameEncoder.bodyLength(message.length);
    const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + bodyLen);
    out.writeInt32LE(bodyLen, 0);
    let off = FRAME_HEADER_SIZE;
    off += cipher.update(nextIv).copy(out, off);
    off += cipher.update(message).copy(out, off);
    off += cipher.final().copy(out, off);
    /* c8 ignore next */
    if (off !== out.length) throw new ProtocolError('BAD_VALUE', 'internal: AES length mismatch');
    this.iv = Buffer.from(nextIv);
    return out;
  }
}

/** Decrypts incoming frames for one direction. */
export class AesFrameDecoder extends FrameDecoder {
  private iv: Buffer;
  private readonly key: Buffer;
  private readonly algorithm: string;

  constructor(key: Uint8Array, handshakeIv: Uint8Array, maxSize = DEFAULT_MAX_MESSAGE_SIZE) {
    super(maxSize);
    this.key = Buffer.from(key);
    this.algorithm = aesAlgorithm(key);
    if (handshakeIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
    this.iv = Buffer.from(handshakeIv);
  }

  protected override checkLength(len: number): void {
    super.checkLength(len);
    if (len % AES_BLOCK !== 0 || len < AES_IV_SIZE + AES_BLOCK)
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
  }

  protected override open(body: Buffer): Buffer {
    let plain: Buffer;
    try {
      const d = createDecipheriv(this.algorithm, this.key, this.iv);
      plain = Buffer.concat([d.update(body), d.final()]);
    } catch {
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    }
    if (plain.length < AES_IV_SIZE) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    this.iv = Buffer.from(plain.subarray(0, AES_IV_SIZE));
    return plain.subarray(AES_IV_SIZE);
  }
}
