/**
 * .NET `BinaryWriter` / `BinaryReader` conventions (PROTOCOL.md §1):
 * little-endian integers, 7-bit-length-prefixed UTF-8 strings, int32-length
 * byte arrays, int32-count arrays and maps, a bool byte before nullable
 * values, DateTime as int64 ticks (UTC) and Guid in .NET byte order.
 *
 * The reader never allocates from an unchecked length: every length and
 * count is checked against the bytes that remain before anything is read.
 */
import { ProtocolError } from './errors.js';

/** Ticks (100 ns) between 0001-01-01T00:00:00Z and the Unix epoch. */
export const UNIX_EPOCH_TICKS = 621355968000000000n;
/** `DateTime.MaxValue.Ticks`. */
export const MAX_TICKS = 3155378975999999999n;
const TICKS_PER_MS = 10000n;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Converts a JS Date (or ms since the epoch) to .NET ticks. */
export function dateToTicks(date: Date | number): bigint {
  const ms = typeof date === 'number' ? date : date.getTime();
  if (!Number.isFinite(ms)) throw new ProtocolError('BAD_VALUE', 'invalid date');
  const ticks = BigInt(Math.trunc(ms)) * TICKS_PER_MS + UNIX_EPOCH_TICKS;
  if (ticks < 0n || ticks > MAX_TICKS)
    throw new ProtocolError('BAD_VALUE', 'date outside the DateTime range');
  return ticks;
}

/** Converts .NET ticks to a JS Date (sub-millisecond ticks are truncated). */
export function ticksToDate(ticks: bigint): Date {
  return new Date(Number((ticks - UNIX_EPOCH_TICKS) / TICKS_PER_MS));
}

/** Parses a canonical GUID string to its 16 bytes in .NET order. */
export function guidToBytes(guid: string): Buffer {
  const hex = guid.replace(/[{}-]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new ProtocolError('BAD_VALUE', `not a GUID: ${guid}`);
  const b = Buffer.from(hex, 'hex');
  // Data1 (4 bytes), Data2 (2), Data3 (2) are little-endian; Data4 (8) as is.
  return Buffer.from([b[3]!, b[2]!, b[1]!, b[0]!, b[5]!, b[4]!, b[7]!, b[6]!, ...b.subarray(8)]);
}

/** Formats 16 bytes in .NET order as a lower-case canonical GUID string. */
export function bytesToGuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new ProtocolError('BAD_VALUE', 'a GUID is 16 bytes');
  const b = bytes;
  const h = (arr: number[]) => Buffer.from(arr).toString('hex');
  return [
    h([b[3]!, b[2]!, b[1]!, b[0]!]),
    h([b[5]!, b[4]!]),
    h([b[7]!, b[6]!]),
    h([b[8]!, b[9]!]),
    h([...b.subarray(10, 16)]),
  ].join('-');
}

/** Unused bytes a `toBuffer()` view may keep alive instead of copying. */
const TOBUFFER_SLACK = 256;

/**
 * Writes .NET-style values into a growing buffer. A writer made with
 * `refFrom` keeps raw byte arrays of at least that many bytes by reference
 * instead of copying them: `pieces()` then returns the message as the bytes
 * before, the array itself, and the bytes after — what a socket writer sends
 * with one `writev` (a 1 MiB chunk of a file is never copied into its
 * message). Such an array must not change until the pieces are written.
 */
export class BinaryWriter {
  private buf: Buffer;
  private pos = 0;
  private readonly refFrom: number;
  /** Pieces finished before `buf` (only with `refFrom`). */
  private done: Buffer[] | null = null;
  private doneLength = 0;

  constructor(initialSize = 256, refFrom = Number.POSITIVE_INFINITY) {
    this.buf = Buffer.allocUnsafe(initialSize);
    this.refFrom = refFrom;
  }

  get length(): number {
    return this.doneLength + this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    // Double for small growth; a large field (a data chunk) gets exactly its
    // room plus a little, so a 1 MiB payload is copied in once, not re-copied
    // through every doubling.
    const size = Math.max(this.buf.length * 2, this.pos + n + 64);
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new ProtocolError('BAD_VALUE', `not a byte: ${v}`);
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  i32(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
      throw new ProtocolError('BAD_VALUE', `not an int32: ${v}`);
    this.ensure(4);
    this.buf.writeInt32LE(v, this.pos);
    this.pos += 4;
    return this;
  }

  i64(v: number | bigint): this {
    if (typeof v === 'number' && !Number.isSafeInteger(v))
      throw new ProtocolError('BAD_VALUE', `not a safe integer: ${v}`);
    const b = BigInt(v);
    if (b < -(2n ** 63n) || b >= 2n ** 63n) throw new ProtocolError('BAD_VALUE', `not an int64: ${v}`);
    this.ensure(8);
    this.buf.writeBigInt64LE(b, this.pos);
    this.pos += 8;
    return this;
  }

  /** 7-bit encoded non-negative int32 (the .NET `Write7BitEncodedInt`). */
  varint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff)
      throw new ProtocolError('BAD_VALUE', `not a 7-bit encodable length: ${v}`);
    this.ensure(5);
    let n = v;
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
    return this;
  }

  string(v: string): this {
    const len = Buffer.byteLength(v, 'utf8');
    this.varint(len);
    this.ensure(len);
    this.buf.write(v, this.pos, len, 'utf8');
    this.pos += len;
    return this;
  }

  /** Raw bytes with no length prefix. */
  raw(v: Uint8Array): this {
    if (v.length >= this.refFrom) {
      this.done ??= [];
      if (this.pos > 0) this.done.push(this.buf.subarray(0, this.pos));
      this.done.push(Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      this.doneLength += this.pos + v.length;
      this.buf = Buffer.allocUnsafe(64);
      this.pos = 0;
      return this;
    }
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
    return this;
  }

  /** int32 length followed by the bytes. */
  bytes(v: Uint8Array): this {
    this.i32(v.length);
    return this.raw(v);
  }

  guid(v: string): this {
    return this.raw(guidToBytes(v));
  }

  datetime(ticks: bigint): this {
    if (ticks < 0n || ticks > MAX_TICKS)
      throw new ProtocolError('BAD_VALUE', 'ticks outside the DateTime range');
    return this.i64(ticks);
  }

  /** A copy-free view of what was written (valid until the next write); joined when arrays were referenced. */
  view(): Buffer {
    if (this.done) return Buffer.concat(this.pieces());
    return this.buf.subarray(0, this.pos);
  }

  /** What was written, as pieces to write in order (one piece unless arrays were referenced; see the class). */
  pieces(): Buffer[] {
    if (!this.done) return [this.buf.subarray(0, this.pos)];
    return this.pos > 0 ? [...this.done, this.buf.subarray(0, this.pos)] : [...this.done];
  }

  /**
   * What was written, as a buffer of its own. When the writer's buffer is
   * mostly used (large messages) this is a view of it rather than a copy;
   * later writes only append, so they never change the bytes returned.
   */
  toBuffer(): Buffer {
    if (this.done) return Buffer.concat(this.pieces());
    if (this.buf.length - this.pos <= TOBUFFER_SLACK || this.pos >= this.buf.length * 0.75)
      return this.buf.subarray(0, this.pos);
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

export class BinaryReader {
  private pos = 0;
  private readonly buf: Buffer;

  constructor(data: Uint8Array) {
    this.buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.buf.length - this.pos)
      throw new ProtocolError('TRUNCATED', `${what}: need ${n} bytes, ${this.buf.length - this.pos} left`);
  }

  u8(): number {
    this.need(1, 'byte');
    return this.buf[this.pos++]!;
  }

  /** Any non-zero byte is true (PROTOCOL.md §1); writers always write 0 or 1. */
  bool(): boolean {
    return this.u8() !== 0;
  }

  i32(): number {
    this.need(4, 'int32');
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  i64big(): bigint {
    this.need(8, 'int64');
    const v = this.buf.readBigInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  /** int64 that must fit a JS safe integer. */
  i64(): number {
    const v = this.i64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw new ProtocolError('BAD_VALUE', `int64 ${v} outside the safe integer range`);
    return Number(v);
  }

  varint(): number {
    let result = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.u8();
      if (i === 4) {
        // The fifth byte holds bits 28..31; a length must stay a non-negative int32.
        if (b > 0x07) throw new ProtocolError('VARINT_OVERFLOW', '7-bit length exceeds int32');
        return result + b * 2 ** 28;
      }
      result |= (b & 0x7f) << (7 * i);
      if ((b & 0x80) === 0) return result;
    }
    /* c8 ignore next */
    throw new ProtocolError('VARINT_OVERFLOW', '7-bit length longer than 5 bytes');
  }

  string(): string {
    const len = this.varint();
    this.need(len, 'string');
    const slice = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return utf8.decode(slice);
    } catch {
      throw new ProtocolError('BAD_UTF8', 'string is not valid UTF-8');
    }
  }

  raw(n: number): Buffer {
    this.need(n, 'bytes');
    const slice = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return slice;
  }

  /** int32 length then bytes; returns a view into the input (no copy). */
  bytes(): Buffer {
    const len = this.i32();
    if (len < 0) throw new ProtocolError('NEGATIVE_LENGTH', `byte array length ${len}`);
    return this.raw(len);
  }

  /** int32 count for an array or map, checked against the bytes left. */
  count(minElementSize: number): number {
    const n = this.i32();
    if (n < 0) throw new ProtocolError('NEGATIVE_LENGTH', `count ${n}`);
    if (n * minElementSize > this.remaining)
      throw new ProtocolError('TRUNCATED', `count ${n} cannot fit in ${this.remaining} bytes`);
    return n;
  }

  guid(): string {
    return bytesToGuid(this.raw(16));
  }

  datetime(): bigint {
    const t = this.i64big();
    if (t < 0n || t > MAX_TICKS)
      throw new ProtocolError('BAD_VALUE', `ticks ${t} outside the DateTime range`);
    return t;
  }

  /** Throws unless every byte was consumed. */
  end(): void {
    if (this.pos !== this.buf.length)
      throw new ProtocolError('TRAILING_BYTES', `${this.buf.length - this.pos} unexpected trailing bytes`);
  }

  /** The unread rest as a view. */
  rest(): Buffer {
    const r = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return r;
  }
}
