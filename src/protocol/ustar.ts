/**
 * A small POSIX ustar codec (IEEE 1003.1-2001 `ustar` headers plus the pax
 * `x` extended header for what does not fit), pure and without I/O. It is
 * the fast path of deploys: the SDK packs a tree with {@link encodeEntry}
 * (src/client/sync.ts) and the host reads it back with
 * {@link decodeHeader} (src/host/tar-reader.ts). The format is the one
 * `tar` writes and reads, so the archive stays a valid tar.
 *
 * Only what deploys need is known: regular files, directories, and pax
 * `path`/`size`/`mtime` (plus the harmless `atime`, `ctime`, ids and owner
 * names). Anything else — links, devices, GNU long names, sparse files,
 * base-256 numbers, a bad checksum — is reported as `unknown`, and the
 * reader hands the archive to node-tar instead of guessing.
 */

/** Size of a tar block; headers are one block, data is padded to whole blocks. */
export const TAR_BLOCK = 512;

/** Largest size the 11 octal digits of a ustar size field hold (8 GiB - 1). */
const MAX_OCTAL_SIZE = 0o77777777777;

/** Bytes of zero padding after `size` bytes of entry data. */
export function tarPadding(size: number): number {
  const r = size % TAR_BLOCK;
  return r === 0 ? 0 : TAR_BLOCK - r;
}

/** An entry header as decoded (a pax header's records already applied by the caller). */
export type TarHeader =
  | {
      readonly kind: 'file' | 'dir';
      readonly name: string;
      readonly size: number;
      readonly mode: number;
      /** Seconds since the epoch. */
      readonly mtime: number;
    }
  | { readonly kind: 'pax'; readonly size: number }
  | { readonly kind: 'end' }
  | { readonly kind: 'unknown'; readonly why: string };

const MAGIC_POSIX = 'ustar\u000000';
const MAGIC_GNU = 'ustar  \u0000';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** The fields every header of ours shares (uid, gid, magic), copied in first. */
const TEMPLATE = (() => {
  const t = Buffer.alloc(TAR_BLOCK);
  t.write('0000000\0', 108, 'latin1'); // uid: portable archives carry no owner
  t.write('0000000\0', 116, 'latin1'); // gid
  t.write(MAGIC_POSIX, 257, 'latin1');
  return t;
})();

/** The sum of TEMPLATE's bytes, the checksum field counted as spaces. */
const TEMPLATE_SUM = TEMPLATE.reduce((n, b) => n + b, 0) + 8 * 0x20;

/** `value` as width - 1 octal digits and a NUL, as GNU tar and node-tar write them; returns their byte sum. */
function writeOctal(buf: Buffer, at: number, width: number, value: number): number {
  let v = value;
  let sum = 0;
  for (let i = at + width - 2; i >= at; i--) {
    const c = 0x30 + (v % 8);
    buf[i] = c;
    sum += c;
    v = Math.floor(v / 8);
  }
  buf[at + width - 1] = 0;
  return sum;
}

function sumOf(buf: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) sum += buf[i]!;
  return sum;
}

function checksum(block: Uint8Array, at: number): number {
  // the checksum field counts as spaces
  return 8 * 0x20 + sumOf(block, at, at + 148) + sumOf(block, at + 156, at + TAR_BLOCK);
}

/** The name split into ustar's prefix and name fields: the byte length of the prefix (0: none), or -1. */
function splitAt(name: string, bytes: number): number {
  if (bytes <= 100) return 0;
  // A directory's trailing '/' belongs to the name part; split at a '/' with ≤ 155 bytes before it.
  for (let i = name.lastIndexOf('/', name.length - 2); i > 0; i = name.lastIndexOf('/', i - 1)) {
    const before = Buffer.byteLength(name.slice(0, i));
    if (before > 155) continue;
    return bytes - before - 1 > 100 ? -1 : before;
  }
  return -1;
}

function writeHeader(
  buf: Buffer,
  at: number,
  name: string,
  prefixBytes: number,
  type: number,
  size: number,
  mode: number,
  mtime: number,
): void {
  // The checksum is summed while writing: the template's part is known.
  buf.set(TEMPLATE, at);
  let sum = TEMPLATE_SUM;
  if (prefixBytes > 0) {
    buf.write(name, at + 345, prefixBytes, 'utf8');
    sum += sumOf(buf, at + 345, at + 345 + prefixBytes);
    const rest = Buffer.from(name).subarray(prefixBytes + 1);
    const n = rest.copy(buf, at, 0, Math.min(rest.length, 100));
    sum += sumOf(buf, at, at + n);
  } else {
    const n = buf.write(name, at, 100, 'utf8');
    sum += sumOf(buf, at, at + n);
  }
  sum += writeOctal(buf, at + 100, 8, mode & 0o7777);
  sum += writeOctal(buf, at + 124, 12, size > MAX_OCTAL_SIZE ? 0 : size);
  sum += writeOctal(buf, at + 136, 12, Math.max(0, Math.min(Math.floor(mtime), MAX_OCTAL_SIZE)));
  buf[at + 156] = type;
  writeOctal(buf, at + 148, 7, sum + type);
  buf[at + 155] = 0x20;
}

/** `s` with anything but printable ASCII as `_`, cut to `max` bytes. */
function ascii(s: string, max: number): string {
  return s.replace(/[^\x20-\x7e]/g, '_').slice(0, max);
}

/** One pax record, `<len> <key>=<value>\n`, whose length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length + bodyLen !== len) len = bodyLen + String(len).length;
  return `${len}${body}`;
}

export interface TarEntryInput {
  /** `/`-separated relative name; a directory's ends with `/`. */
  readonly name: string;
  readonly type: 'file' | 'dir';
  readonly size: number;
  readonly mode: number;
  /** Milliseconds since the epoch (ustar keeps whole seconds). */
  readonly mtimeMs: number;
}

/** Bytes {@link encodeEntry} writes for `entry` (its header blocks, not the data). */
export function entryHeaderBytes(entry: TarEntryInput): number {
  if (entry.size <= MAX_OCTAL_SIZE && splitAt(entry.name, Buffer.byteLength(entry.name)) >= 0)
    return TAR_BLOCK;
  const pax = paxOf(entry);
  return 2 * TAR_BLOCK + pax.length + tarPadding(pax.length);
}

function paxOf(entry: TarEntryInput): Buffer {
  let text = '';
  if (splitAt(entry.name, Buffer.byteLength(entry.name)) < 0) text += paxRecord('path', entry.name);
  if (entry.size > MAX_OCTAL_SIZE) text += paxRecord('size', String(entry.size));
  return Buffer.from(text);
}

/**
 * Writes the header block(s) of `entry` into `buf` at `at` (room for
 * {@link entryHeaderBytes} is the caller's) and returns the bytes written.
 * A name that fits neither the name field nor prefix + name, or a size
 * past 8 GiB, gets a pax `x` header first.
 */
export function encodeEntry(buf: Buffer, at: number, entry: TarEntryInput): number {
  const type = entry.type === 'dir' ? 0x35 : 0x30;
  const mtime = entry.mtimeMs / 1000;
  const split = splitAt(entry.name, Buffer.byteLength(entry.name));
  if (split >= 0 && entry.size <= MAX_OCTAL_SIZE) {
    writeHeader(buf, at, entry.name, split, type, entry.size, entry.mode, mtime);
    return TAR_BLOCK;
  }
  const pax = paxOf(entry);
  const base = entry.name.replace(/\/$/, '').split('/').pop() ?? '';
  writeHeader(buf, at, ascii(`PaxHeader/${base}`, 100), 0, 0x78, pax.length, 0o644, mtime);
  let off = at + TAR_BLOCK;
  pax.copy(buf, off);
  off += pax.length;
  const pad = tarPadding(pax.length);
  buf.fill(0, off, off + pad);
  off += pad;
  // Readers without pax see a shortened name; ours take the pax path.
  if (split >= 0) writeHeader(buf, off, entry.name, split, type, entry.size, entry.mode, mtime);
  else {
    const short = ascii(entry.type === 'dir' ? `${base.slice(0, 98)}/` : base, 100);
    writeHeader(buf, off, short, 0, type, entry.size, entry.mode, mtime);
  }
  return off + TAR_BLOCK - at;
}

/** The end of an archive: two zero blocks. */
export const TAR_END: Readonly<Buffer> = Buffer.alloc(2 * TAR_BLOCK);

function isZero(block: Uint8Array, at: number): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (block[at + i] !== 0) return false;
  return true;
}

/** An octal field (digits, then NUL or space), or -1 when it is not plain octal. */
function readOctal(block: Uint8Array, at: number, width: number): number {
  let i = at;
  const end = at + width;
  while (i < end && block[i] === 0x20) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c >= 0x30 && c <= 0x37) {
      v = v * 8 + (c - 0x30);
      digits++;
    } else if (c === 0 || c === 0x20) break;
    else return -1;
  }
  return digits === 0 ? (i === end || block[i] === 0 ? 0 : -1) : v;
}

function readText(block: Buffer, at: number, width: number): string | null {
  let end = at;
  let high = 0;
  for (; end < at + width; end++) {
    const c = block[end]!;
    if (c === 0) break;
    high |= c;
  }
  if (high < 0x80) return block.toString('latin1', at, end);
  try {
    return decoder.decode(block.subarray(at, end));
  } catch {
    return null;
  }
}

function magicIs(block: Uint8Array, at: number, magic: string): boolean {
  for (let i = 0; i < 8; i++) if (block[at + 257 + i] !== magic.charCodeAt(i)) return false;
  return true;
}

/** Decodes the header block at `at` (512 bytes must be there). */
export function decodeHeader(block: Buffer, at: number): TarHeader {
  if (isZero(block, at)) return { kind: 'end' };
  const stored = readOctal(block, at + 148, 8);
  if (stored < 0 || stored !== checksum(block, at)) return { kind: 'unknown', why: 'checksum' };
  const posix = magicIs(block, at, MAGIC_POSIX);
  // GNU's old format keeps other fields where ustar has the prefix: fast only when it is empty.
  if (!posix && !(magicIs(block, at, MAGIC_GNU) && block[at + 345] === 0))
    return { kind: 'unknown', why: 'not ustar' };
  const size = readOctal(block, at + 124, 12);
  const mode = readOctal(block, at + 100, 8);
  const mtime = readOctal(block, at + 136, 12);
  if (size < 0 || mode < 0 || mtime < 0) return { kind: 'unknown', why: 'number field' };
  const flag = block[at + 156]!;
  if (flag === 0x78) return { kind: 'pax', size };
  const kind = flag === 0x30 || flag === 0 || flag === 0x37 ? 'file' : flag === 0x35 ? 'dir' : null;
  if (!kind) return { kind: 'unknown', why: `type ${String.fromCharCode(flag)}` };
  if (kind === 'dir' && size !== 0) return { kind: 'unknown', why: 'directory with data' };
  const base = readText(block, at, 100);
  const prefix = posix ? readText(block, at + 345, 155) : '';
  if (base === null || prefix === null) return { kind: 'unknown', why: 'name encoding' };
  const name = prefix ? `${prefix}/${base}` : base;
  // An old-style directory (type 0 with a trailing '/') is node-tar's to judge.
  if (kind === 'file' && name.endsWith('/')) return { kind: 'unknown', why: 'file named as directory' };
  return { kind, name, size, mode: mode & 0o7777, mtime };
}

/** pax keys the fast path applies or may ignore; any other sends the archive to node-tar. */
const PAX_KNOWN = new Set(['path', 'size', 'mtime', 'atime', 'ctime', 'uid', 'gid', 'uname', 'gname']);

/** The records of a pax `x` header's data, or null when one is malformed or not known. */
export function decodePax(data: Buffer): Map<string, string> | null {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    let sp = at;
    while (sp < data.length && data[sp] !== 0x20) sp++;
    const len = Number(readText(data, at, sp - at));
    if (!Number.isInteger(len) || len <= sp - at + 1 || at + len > data.length) return null;
    if (data[at + len - 1] !== 0x0a) return null;
    let text: string;
    try {
      text = decoder.decode(data.subarray(sp + 1, at + len - 1));
    } catch {
      return null;
    }
    const eq = text.indexOf('=');
    if (eq <= 0) return null;
    const key = text.slice(0, eq);
    if (!PAX_KNOWN.has(key)) return null;
    out.set(key, text.slice(eq + 1));
    at += len;
  }
  return out;
}
