/**
 * Small pieces the file commands share: argument checks the codec cannot
 * make, stat and time conversions, FileEntry construction, and the
 * "stat or null" / "mkdir -p" / "read or write fully" helpers. No state.
 */
import { randomBytes } from 'node:crypto';
import {
  type BigIntStats,
  constants as fsc,
  lstatSync,
  mkdirSync,
  realpathSync,
  type Stats,
  statSync,
} from 'node:fs';
import { type FileHandle, lstat, mkdir, open, stat } from 'node:fs/promises';
import path from 'node:path';
import { type FileEntry, MAX_TICKS, UNIX_EPOCH_TICKS } from '../protocol/index.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import type { HostError } from './types.js';

const NS_PER_TICK = 100n;
const TICKS_PER_MICROSECOND = 10n;
const MICROS_PER_SECOND = 1_000_000n;
/** The file-type bits of st_mode (S_IFMT): a mode argument may carry them; they are ignored. */
const S_IFMT = 0o170000;

// ------------------------------------------------------------ validation

export function bad(what: string, detail: string): HostError {
  return pathError('InvalidArgument', what, detail);
}
export function asBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw bad(what, 'must be a boolean');
  return v;
}
/** A value for a message, whatever it is (String() throws on some objects). */
function shown(v: unknown): string {
  return typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean' ? String(v) : typeof v;
}
export function asInt(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw bad(what, `must be an integer in [${min}, ${max}], got ${shown(v)}`);
  }
  return v;
}
export function asBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw bad(what, 'must be bytes');
  return v;
}
export function asTicks(v: unknown, what: string): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > MAX_TICKS) throw bad(what, 'must be DateTime ticks');
  return v;
}
/**
 * Permission bits of a mode argument. A full st_mode (as FileEntry.mode
 * reports it, e.g. 0100644) is accepted and its type bits dropped, so a
 * client can copy a mode from one entry to another unchanged.
 */
export function asMode(v: unknown, what: string): number {
  return asInt(v, what, 0, S_IFMT | 0o7777) & 0o7777;
}
export function asStrings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bad(what, 'must be a list of strings');
  return v as string[];
}

// ------------------------------------------------------------ conversions

/** .NET ticks of a bigint stat's mtime, keeping sub-millisecond precision. */
export function statTicks(st: BigIntStats): bigint {
  const t = st.mtimeNs / NS_PER_TICK + UNIX_EPOCH_TICKS;
  return t < 0n ? 0n : t > MAX_TICKS ? MAX_TICKS : t;
}

/**
 * Ticks → seconds since the Unix epoch, as utimes takes them. libuv
 * truncates the double to whole microseconds, so this rounds to the nearest
 * microsecond and aims at its middle: the double's rounding error (≈0.24 µs
 * for present-day dates) then cannot push the truncation into a neighbour.
 */
export function ticksToSeconds(ticks: bigint): number {
  const unix = ticks - UNIX_EPOCH_TICKS;
  const half = unix >= 0n ? TICKS_PER_MICROSECOND / 2n : -(TICKS_PER_MICROSECOND / 2n);
  const micros = (unix + half) / TICKS_PER_MICROSECOND;
  return Number(micros / MICROS_PER_SECOND) + (Number(micros % MICROS_PER_SECOND) + 0.5) / 1e6;
}

/**
 * The FileEntry of `fullPath` from its lstat: a symlink describes itself
 * (never followed), `mode` is the whole st_mode, type bits included
 * (0100644 for a plain 0644 file), so a client can tell a link or a FIFO.
 */
export function entryOf(fullPath: string, st: BigIntStats): FileEntry {
  return {
    fullPath,
    isDirectory: st.isDirectory(),
    size: Number(st.size),
    lastWriteUtc: statTicks(st),
    mode: Number(st.mode),
  };
}

/** Bytes a 7-bit-prefixed string takes on the wire. */
export function stringSize(s: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  return n + (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);
}

/** Random bytes for temp names, drawn 6 at a time (one randomBytes call per 512 names). */
let randomPool = Buffer.alloc(0);
let randomAt = 0;
function randomHex6(): string {
  if (randomAt + 6 > randomPool.length) {
    randomPool = randomBytes(6 * 512);
    randomAt = 0;
  }
  randomAt += 6;
  return randomPool.toString('hex', randomAt - 6, randomAt);
}

export function tempNameFor(target: string): string {
  const base = path.basename(target).slice(0, 64);
  return path.join(path.dirname(target), `.${base}.${randomHex6()}.tmp`);
}

/**
 * Where a whole-file write lands, given the `lstat` of the path (`st`): a
 * symlink is written through (the real file is replaced, not the link), a
 * dangling one is replaced itself. `existing` is what is there now (stat).
 */
export function writeTarget(
  p: string,
  st: BigIntStats | Stats | null,
): { path: string; existing: BigIntStats | Stats | null } {
  if (!st?.isSymbolicLink()) return { path: p, existing: st };
  let real: string;
  try {
    real = realpathSync.native(p);
  } catch {
    return { path: p, existing: null }; // dangling: the link itself is replaced
  }
  return { path: real, existing: tryStatSync(real) };
}

/** What `stat` says of `p` given its `lstat` (`st`): null when missing or unreadable. */
export function followed(p: string, st: BigIntStats | null): BigIntStats | Stats | null {
  if (!st?.isSymbolicLink()) return st;
  try {
    return statSync(p, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

export async function tryLstat(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

export function tryLstatSync(p: string): Stats | null {
  try {
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if (errorCode(err) === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

export function tryStatSync(p: string): Stats | null {
  try {
    return statSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if (errorCode(err) === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

export async function tryStat(p: string): Promise<Stats | null> {
  try {
    return await stat(p);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

/** Creates `dir` and its parents; a file in the way is `NotDirectory`. */
export async function ensureDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    const code = errorCode(err);
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw pathError('NotDirectory', dir, 'a parent of the path is not a directory');
    }
    throw fsError(err, dir);
  }
}

/** `mkdir -p`, synchronously; a file in the way is `NotDirectory`. */
export function ensureDirectorySync(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const code = errorCode(err);
    if (code === 'EEXIST' || code === 'ENOTDIR') {
      throw pathError('NotDirectory', dir, 'a parent of the path is not a directory');
    }
    throw fsError(err, dir);
  }
}

/** Reads until `buf` is full or EOF; `position` null reads from (and advances) the current offset. */
export async function readFully(fh: FileHandle, buf: Buffer, position: number | null): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(
      buf,
      done,
      buf.length - done,
      position === null ? null : position + done,
    );
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export async function writeFully(fh: FileHandle, data: Uint8Array, position: number | null): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(
      data,
      done,
      data.length - done,
      position === null ? null : position + done,
    );
    if (bytesWritten <= 0) throw pathError('IOError', 'write', 'no progress writing');
    done += bytesWritten;
  }
}

/**
 * Opens a regular file. Directories are `IsDirectory`, other special files
 * `InvalidArgument` (opening a FIFO could block the host forever).
 */
export async function openRegular(
  p: string,
  flags: number,
  mode = 0o666,
): Promise<{ fh: FileHandle; st: Stats }> {
  const pre = await tryStat(p);
  if (pre) {
    if (pre.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
    if (!pre.isFile()) throw pathError('InvalidArgument', p, 'not a regular file');
  } else if ((flags & fsc.O_CREAT) === 0) {
    throw pathError('NotFound', p, 'no such file or directory');
  }
  let fh: FileHandle;
  try {
    fh = await open(p, flags, mode);
  } catch (err) {
    throw fsError(err, p);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
    if (!st.isFile()) throw pathError('InvalidArgument', p, 'not a regular file');
    return { fh, st };
  } catch (err) {
    await fh.close().catch(() => {});
    throw fsError(err, p);
  }
}

/** OpenFile with a creating mode creates missing parents, like the other writers. */
export async function ensureParentForCreate(p: string, flags: number): Promise<void> {
  if ((flags & fsc.O_CREAT) === 0) return;
  if (await tryStat(path.dirname(p))) return;
  await ensureDirectory(path.dirname(p));
}
