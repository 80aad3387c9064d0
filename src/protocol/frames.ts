/**
 * Framing (PROTOCOL.md §3, §4).
 *
 * A *message* here is a frame without its length: client → agent
 * `byte agentType | int32 command | data`, agent → client
 * `int32 command | data`. The bytes before the data are the direction's
 * header (5 or 4 bytes; 0 for the host pipe, whose body is opaque here).
 *
 * Plain frames: `int32 dataLength | header | data`. The length counts the
 * data only; a negative length or one over MaxMessageSize is refused before
 * a byte of the body is buffered.
 *
 * AES frames: `int32 L | ciphertext[L]`, the ciphertext being
 * AES-CBC/PKCS#7 of `nextIV[16] | header | data` under the direction's
 * current IV; the next frame in the same direction uses `nextIV`. Both
 * chains start at the handshake IV. L must be a multiple of 16, at least 32
 * and at most MaxMessageSize + 48; the data after decryption must fit
 * MaxMessageSize. Every failure to decrypt is the one error DECRYPT_FAILED.
 *
 * Decoders are incremental: `push()` takes chunks of any size and returns the
 * whole messages they complete. Node's crypto is used (no I/O).
 */
import { type Cipher, createCipheriv, createDecipheriv, type Decipher, randomFillSync } from 'node:crypto';
import {
  AES_BLOCK,
  AES_FRAME_OVERHEAD,
  AES_IV_SIZE,
  AES_MIN_CIPHERTEXT,
  DEFAULT_MAX_MESSAGE_SIZE,
  FRAME_LENGTH_SIZE,
} from './constants.js';
import { ProtocolError } from './errors.js';
import type { ReplayCache } from './replay.js';

export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_LENGTH_SIZE);
  h.writeInt32LE(length, 0);
  return h;
}

/** Frames one plain message whose first `headerSize` bytes are its header (copying it after the length). */
export function encodePlainFrame(message: Uint8Array, headerSize: number): Buffer {
  if (message.length < headerSize)
    throw new ProtocolError('TRUNCATED', `a message has at least its ${headerSize}-byte header`);
  const out = Buffer.allocUnsafe(FRAME_LENGTH_SIZE + message.length);
  out.writeInt32LE(message.length - headerSize, 0);
  out.set(message, FRAME_LENGTH_SIZE);
  return out;
}

/**
 * A decoded message: one buffer, or — for a large frame that spanned socket
 * reads, when the decoder was asked for them (`piecesFrom`) — its bytes as
 * the views of those reads, in order, never copied. The first piece of a
 * `Pieces` holds at least `PIECES_HEAD` bytes of the message (or all of
 * it), so its header, token and reply header can be read from it alone.
 */
export type Pieces = readonly Buffer[];

/** Bytes of a message the first of its pieces always holds (copied together when the reads split them). */
export const PIECES_HEAD = 64;

/** Total length of a message given as one buffer or as pieces. */
export function piecesLength(message: Buffer | Pieces): number {
  if (Buffer.isBuffer(message)) return message.length;
  let n = 0;
  for (const p of message) n += p.length;
  return n;
}

/** The message as one buffer (pieces are copied together; a buffer is returned as it is). */
export function joinPieces(message: Buffer | Pieces): Buffer {
  if (Buffer.isBuffer(message)) return message;
  return message.length === 1 ? message[0]! : Buffer.concat(message as Buffer[]);
}

/** Largest frame body `pushTransient()` allocates whole when its length arrives (larger: joined at the end). */
export const TRANSIENT_PREALLOC = 8 * 1024 * 1024;

/**
 * Reassembles length-prefixed frames from arbitrary chunks. Frames that sit
 * wholly inside one chunk are returned as views (no copy); a frame that
 * spans chunks is copied into one buffer, or, from `piecesFrom` bytes of
 * body on and through `pushPieces()`, returned as the views of its chunks
 * (see `Pieces`): a forwarder then writes them on without a copy and without
 * allocating the frame again (the agent's hot path; docs/BENCHMARKS.md).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // body length of the frame in progress, -1 while reading the length
  /** Largest data length accepted. */
  readonly maxSize: number;
  /** Bytes between the length and the data, not counted by the length. */
  readonly headerSize: number;
  /** Frame bodies at least this long that span chunks come out of `pushPieces()` as pieces. */
  readonly piecesFrom: number;
  private failed: ProtocolError | null = null;
  // pushTransient() state: the length's bytes when a read split them, and the body being filled.
  private readonly lengthBytes = Buffer.alloc(FRAME_LENGTH_SIZE);
  private lengthFilled = 0;
  private body: Buffer | null = null;
  private filled = 0;

  constructor(maxSize = DEFAULT_MAX_MESSAGE_SIZE, headerSize = 0, piecesFrom = 64 * 1024) {
    this.maxSize = maxSize;
    this.headerSize = headerSize;
    this.piecesFrom = Math.max(piecesFrom, 2 * PIECES_HEAD);
  }

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.buffered + this.filled + this.lengthFilled;
  }

  /** Checks a frame's length field and returns the bytes of body that follow it. */
  protected bodyLength(len: number): number {
    if (len < 0) throw new ProtocolError('NEGATIVE_LENGTH', `frame length ${len} is negative`);
    if (len > this.maxSize)
      throw new ProtocolError('LENGTH_LIMIT', `frame length ${len} exceeds the limit of ${this.maxSize}`);
    return this.headerSize + len;
  }

  /** Transforms a whole frame body into the message (identity for plain). */
  protected open(body: Buffer): Buffer {
    return body;
  }

  /** Bytes of body the first piece of a frame read in pieces holds (its message's PIECES_HEAD). */
  protected get bodyHead(): number {
    return PIECES_HEAD;
  }

  /** Transforms a frame body given as pieces (see `takePieces`) into the message's pieces. */
  protected openPieces(body: Buffer[]): Buffer | Pieces {
    return body;
  }

  /**
   * The next `n` bytes as views of the chunks (no copy); the first piece is
   * made to hold `PIECES_HEAD` bytes (a small copy when the chunks split them).
   */
  private takePieces(n: number): Buffer[] {
    const out: Buffer[] = [this.take(Math.min(this.bodyHead, n))];
    let left = n - out[0]!.length;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        out.push(c);
        this.chunks.shift();
        left -= c.length;
        this.buffered -= c.length;
      } else {
        out.push(c.subarray(0, left));
        this.chunks[0] = c.subarray(left);
        this.buffered -= left;
        left = 0;
      }
    }
    return out;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
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

  /**
   * Like `push()` for a chunk that is only valid during the call (a socket
   * read into a reused buffer, Node's `onread`): nothing returned or kept
   * refers to it. A frame's body is copied once, into a buffer allocated when
   * its length is known (checked against the limit first; at most
   * `TRANSIENT_PREALLOC` at once, larger bodies are copied in as they come
   * and joined). Do not mix with `push()` on one decoder.
   */
  pushTransient(chunk: Uint8Array): Buffer[] {
    if (this.failed) throw this.failed;
    const out: Buffer[] = [];
    const n = chunk.length;
    let off = 0;
    try {
      while (off < n) {
        if (this.need < 0) {
          let len: number;
          if (this.lengthFilled === 0 && n - off >= FRAME_LENGTH_SIZE) {
            len =
              chunk[off]! | (chunk[off + 1]! << 8) | (chunk[off + 2]! << 16) | (chunk[off + 3]! << 24) | 0;
            off += FRAME_LENGTH_SIZE;
          } else {
            const k = Math.min(FRAME_LENGTH_SIZE - this.lengthFilled, n - off);
            this.lengthBytes.set(chunk.subarray(off, off + k), this.lengthFilled);
            this.lengthFilled += k;
            off += k;
            if (this.lengthFilled < FRAME_LENGTH_SIZE) break;
            this.lengthFilled = 0;
            len = this.lengthBytes.readInt32LE(0);
          }
          this.need = this.bodyLength(len);
          this.filled = 0;
          if (this.need === 0) {
            this.need = -1;
            out.push(this.open(Buffer.alloc(0)));
            continue;
          }
          this.body = this.need <= TRANSIENT_PREALLOC ? Buffer.allocUnsafe(this.need) : null;
        }
        const k = Math.min(this.need - this.filled, n - off);
        if (this.body) this.body.set(chunk.subarray(off, off + k), this.filled);
        else if (k > 0) this.chunks.push(Buffer.from(chunk.subarray(off, off + k)));
        this.filled += k;
        off += k;
        if (this.filled < this.need) break;
        const body = this.body ?? Buffer.concat(this.chunks, this.need);
        this.chunks = [];
        this.body = null;
        this.need = -1;
        this.filled = 0;
        out.push(this.open(body));
      }
    } catch (err) {
      this.failed =
        err instanceof ProtocolError ? err : new ProtocolError('BAD_VALUE', `frame error: ${String(err)}`);
      this.chunks = [];
      this.body = null;
      throw this.failed;
    }
    return out;
  }

  /** Takes a chunk; returns the whole messages it completes, each as one buffer. */
  push(chunk: Uint8Array): Buffer[] {
    return this.decode(chunk, false) as Buffer[];
  }

  /** Like `push()`, but large frames that spanned chunks come out as their pieces (see `Pieces`). */
  pushPieces(chunk: Uint8Array): (Buffer | Pieces)[] {
    return this.decode(chunk, true);
  }

  private decode(chunk: Uint8Array, pieces: boolean): (Buffer | Pieces)[] {
    if (this.failed) throw this.failed;
    const out: (Buffer | Pieces)[] = [];
    if (chunk.length > 0) {
      this.chunks.push(
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
      );
      this.buffered += chunk.length;
    }
    try {
      for (;;) {
        if (this.need < 0) {
          if (this.buffered < FRAME_LENGTH_SIZE) break;
          const len = this.take(FRAME_LENGTH_SIZE).readInt32LE(0);
          this.need = this.bodyLength(len);
        }
        if (this.buffered < this.need) break;
        const n = this.need;
        this.need = -1;
        if (pieces && n >= this.piecesFrom && this.chunks[0]!.length < n)
          out.push(this.openPieces(this.takePieces(n)));
        else out.push(this.open(this.take(n)));
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

  /** Ciphertext length for a message (header and data) of `n` bytes. */
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
  encodePieces(input: Uint8Array | Pieces, nextIv?: Uint8Array): Buffer[] {
    const next = nextIv ?? this.randomIv();
    if (next.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'next IV must be 16 bytes');
    const length = input instanceof Uint8Array ? input.length : piecesLength(input);
    const message =
      input instanceof Uint8Array ? input : length <= AES_SMALL_MESSAGE ? joinPieces(input) : input;
    const bodyLen = AesFrameEncoder.bodyLength(length);
    const padLen = bodyLen - AES_IV_SIZE - length;
    const first = xor3(next, this.iv, this.chain);
    let pieces: Buffer[];
    if (message instanceof Uint8Array && length <= AES_SMALL_MESSAGE) {
      const plain = Buffer.allocUnsafe(FRAME_LENGTH_SIZE + bodyLen);
      plain.writeInt32LE(bodyLen, 0);
      first.copy(plain, FRAME_LENGTH_SIZE);
      plain.set(message, FRAME_LENGTH_SIZE + AES_IV_SIZE);
      plain.fill(padLen, FRAME_LENGTH_SIZE + AES_IV_SIZE + message.length);
      const body = this.cipher.update(plain.subarray(FRAME_LENGTH_SIZE));
      body.copy(plain, FRAME_LENGTH_SIZE);
      pieces = [plain];
      this.chain = body.subarray(bodyLen - AES_BLOCK);
    } else {
      pieces = [frameHeader(bodyLen), this.cipher.update(first)];
      if (message instanceof Uint8Array) pieces.push(this.cipher.update(message));
      else for (const m of message) pieces.push(this.cipher.update(m));
      const c3 = this.cipher.update(Buffer.alloc(padLen, padLen));
      pieces.push(c3);
      /* c8 ignore next 2 */
      if (piecesLength(pieces) !== FRAME_LENGTH_SIZE + bodyLen)
        throw new ProtocolError('BAD_VALUE', 'internal: AES length mismatch');
      this.chain = Buffer.from(c3.subarray(c3.length - AES_BLOCK));
    }
    this.iv = Buffer.from(next);
    return pieces;
  }

  /** Encrypts one message and returns the whole frame (header + ciphertext) in one buffer. */
  encode(message: Uint8Array | Pieces, nextIv?: Uint8Array): Buffer {
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
export interface AesFrameDecoderOptions {
  /** Largest data length (default 64 MiB). */
  maxSize?: number;
  /** Header bytes of the direction (5 client → agent, 4 agent → client). */
  headerSize: number;
  /** Where accepted frames are remembered; a frame already seen is REPLAYED (§3). */
  replay?: ReplayCache;
  /** Ciphertext length from which `pushPieces()` returns a frame that spanned chunks as pieces (default 64 KiB). */
  piecesFrom?: number;
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
  private readonly replay: ReplayCache | undefined;

  constructor(key: Uint8Array, handshakeIv: Uint8Array, options: AesFrameDecoderOptions) {
    super(options.maxSize ?? DEFAULT_MAX_MESSAGE_SIZE, options.headerSize, options.piecesFrom);
    const algorithm = aesAlgorithm(key);
    if (handshakeIv.length !== AES_IV_SIZE) throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
    this.iv = Buffer.from(handshakeIv);
    this.chain = this.iv;
    this.decipher = createDecipheriv(algorithm, key, handshakeIv).setAutoPadding(false);
    this.replay = options.replay;
  }

  protected override bodyLength(len: number): number {
    if (len % AES_BLOCK !== 0 || len < AES_MIN_CIPHERTEXT || len > this.maxSize + AES_FRAME_OVERHEAD)
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    return len;
  }

  /** The next IV comes before the message: a multiple of the block, so the cipher keeps no partial block. */
  protected override get bodyHead(): number {
    return AES_IV_SIZE + PIECES_HEAD;
  }

  protected override open(body: Buffer): Buffer {
    let plain: Buffer;
    try {
      plain = this.decipher.update(body);
    } catch {
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    }
    if (plain.length !== body.length) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    const pad = this.check(plain, plain, plain.length, body.subarray(body.length - AES_BLOCK));
    return plain.subarray(AES_IV_SIZE, plain.length - pad);
  }

  /**
   * A frame read in pieces: each piece is decrypted as it is (no copy of the
   * ciphertext), and the frame is still checked whole — padding, length and
   * replay digest — before any of it is returned.
   */
  protected override openPieces(body: Buffer[]): Pieces {
    const plain: Buffer[] = [];
    let total = 0;
    let length = 0;
    try {
      for (const b of body) {
        length += b.length;
        const p = this.decipher.update(b);
        if (p.length > 0) plain.push(p);
        total += p.length;
      }
    } catch {
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    }
    if (total !== length || plain.length === 0)
      throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    // The first body piece holds bodyHead bytes (whole blocks) and the cipher
    // keeps no partial block between frames, so the first plaintext piece
    // holds them too; the last call completes the last block, so it returns
    // at least one. Anything else is joined (never expected).
    let first = plain[0]!;
    if (first.length < this.bodyHead) {
      first = Buffer.concat(plain);
      plain.length = 0;
      plain.push(first);
    }
    const last = plain[plain.length - 1]!;
    const pad = this.check(first, last, total, lastBytes(body, AES_BLOCK));
    plain[0] = first.subarray(AES_IV_SIZE);
    plain[plain.length - 1] =
      plain.length === 1
        ? plain[0]!.subarray(0, plain[0]!.length - pad)
        : last.subarray(0, last.length - pad);
    if (plain[plain.length - 1]!.length === 0) plain.pop();
    return plain;
  }

  /**
   * Checks a decrypted frame (`first` and `last` are its first and last
   * plaintext pieces, the same buffer when whole), moves the IV chain on,
   * remembers the frame in the replay cache; returns the padding length.
   */
  private check(first: Buffer, last: Buffer, total: number, lastCipherBlock: Buffer): number {
    const pad = last[last.length - 1]!;
    let bad = pad < 1 || pad > AES_BLOCK || last.length < AES_BLOCK ? 1 : 0;
    for (let i = last.length - AES_BLOCK; i < last.length - 1; i++)
      if (i >= last.length - pad && last[i] !== pad) bad = 1;
    const dataLength = total - pad - AES_IV_SIZE - this.headerSize;
    if (dataLength < 0 || dataLength > this.maxSize) bad = 1;
    // The chain moves on whatever the outcome, but a failure ends the stream anyway.
    const next = xor3(first.subarray(0, AES_BLOCK), this.chain, this.iv);
    this.chain = Buffer.from(lastCipherBlock);
    this.iv = next;
    if (bad) throw new ProtocolError('DECRYPT_FAILED', 'frame failed to decrypt');
    if (this.replay && !this.replay.addLastBlock(lastCipherBlock, total))
      throw new ProtocolError('REPLAYED', 'frame was already accepted (replay)');
    return pad;
  }
}

/** The last `n` bytes of pieces, as one buffer (a view when the last piece holds them). */
function lastBytes(pieces: readonly Buffer[], n: number): Buffer {
  const tail = pieces[pieces.length - 1]!;
  if (tail.length >= n) return tail.subarray(tail.length - n);
  return joinPieces(pieces).subarray(-n);
}
