/**
 * The host's file service: every product command with codes 1–20
 * (PROTOCOL.md §5.2). One instance per session; it owns the session's open
 * file handles.
 *
 * Decisions (see also docs/PROTOCOL.md):
 * - Errors are `HostError`s whose message is `<Kind>: <path>: <detail>`;
 *   errno codes map through the single table in fs-errors.ts.
 * - Only regular files are read, written, hashed or copied; directories are
 *   `IsDirectory`, other special files (FIFOs, devices) `InvalidArgument`.
 * - Whole-file writes (WriteAllBytes, CopyFile, cross-device Move) are atomic:
 *   a unique temp file `.<name>.<random>.tmp` in the destination directory,
 *   written, chmod'ed, timestamped, fsync'ed, then renamed over the target.
 *   A symlinked target is written through (the link's target is replaced).
 *   Small WriteAllBytes (≤ SMALL_WRITE) do all of it with synchronous calls
 *   in one go (replaceSmall); fsync runs inline only where it is free
 *   (tmpfs), else in the thread pool, directory fsyncs grouped.
 * - One-path queries and metadata changes use synchronous fs calls: on a
 *   local file system each is cheaper than a promise through the thread
 *   pool, and the host is one process per session (docs/ARCHITECTURE.md).
 * - CreateDirectory on an existing non-directory is `AlreadyExists`.
 * - Move never replaces a directory: with `overwrite` an existing
 *   destination directory is `IsDirectory`, and a directory source never
 *   replaces an existing file (`AlreadyExists`).
 * - ListDirectory: an excluded directory is not descended into.
 * - DeleteDirectory/ClearDirectory refuse a file-system root (`AccessDenied`).
 * - SetMode on Windows only toggles the read-only attribute (the owner
 *   write bit); the other bits are ignored by the platform.
 * - lastWriteTime is set through Node's utimes, which libuv truncates to
 *   whole microseconds: ticks are rounded to the nearest microsecond (reads
 *   keep full 100 ns precision).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  type BigIntStats,
  chmodSync,
  closeSync,
  fchmodSync,
  fchownSync,
  constants as fsc,
  fstatSync,
  fsync,
  fsyncSync,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  type Stats,
  statfsSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import {
  chmod,
  copyFile,
  type FileHandle,
  lstat,
  mkdir,
  open,
  opendir,
  readlink,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  utimes,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type picomatchType from 'picomatch';
import {
  EntryKind,
  FileAccess,
  FileMode,
  HASH_NAMES,
  type HashAlgorithm,
  MAX_TICKS,
  type ProductCommand,
  REPLY_HEADER_SIZE,
  type RequestOf,
  type ResultOf,
  UNIX_EPOCH_TICKS,
} from '../protocol/index.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import { isFilesystemRoot, PathResolver } from './paths.js';
import { type HostContext, HostError } from './types.js';

/** picomatch is loaded on the first glob, not at host boot (it is a quarter of a boot's module loading). */
let picomatchFn: typeof picomatchType | null = null;
function loadPicomatch(): typeof picomatchType {
  picomatchFn ??= createRequire(import.meta.url)('picomatch') as typeof picomatchType;
  return picomatchFn;
}

/** The file commands (product codes 1–20), in code order. */
export const FILE_COMMANDS = [
  'FileExists',
  'DirectoryExists',
  'GetFileInfo',
  'ListDirectory',
  'CreateDirectory',
  'DeleteFile',
  'DeleteDirectory',
  'ClearDirectory',
  'Move',
  'CopyFile',
  'ReadAllBytes',
  'WriteAllBytes',
  'OpenFile',
  'ReadFile',
  'WriteFile',
  'CloseFile',
  'GetFileHash',
  'SetLastWriteTime',
  'SetMode',
  'DeleteFiles',
] as const satisfies readonly ProductCommand[];
export type FileCommandName = (typeof FILE_COMMANDS)[number];

const FILE_COMMAND_SET: ReadonlySet<string> = new Set(FILE_COMMANDS);
export function isFileCommand(name: string): name is FileCommandName {
  return FILE_COMMAND_SET.has(name);
}

/**
 * Bytes reserved for the reply envelope around a `bytes` result: the reply
 * header (6) plus the length prefix (4), rounded up generously.
 */
export const ENVELOPE_ALLOWANCE = 64;
/** Chunk size for streaming reads (hashing). */
const STREAM_CHUNK = 1024 * 1024;
/** ListDirectory lstats this many entries concurrently. */
const LIST_BATCH = 64;
/** ClearDirectory reads at most this many names before deleting them. */
const CLEAR_BATCH = 1024;
/** Fixed part of a ListDirectory entry: kind u8 + size i64 + ticks i64 + mode i32. */
const ENTRY_FIXED_SIZE = 1 + 8 + 8 + 4;
const MAX_HANDLE = 0x7fffffff;
const NS_PER_TICK = 100n;
const TICKS_PER_MICROSECOND = 10n;
const MICROS_PER_SECOND = 1_000_000n;

type Entry = ResultOf<'GetFileInfo'>;
type ListEntry = ResultOf<'ListDirectory'>['entries'][number];
type Handlers = { [K in FileCommandName]: (args: RequestOf<K>) => Promise<ResultOf<K>> };

interface OpenHandle {
  readonly fh: FileHandle;
  readonly path: string;
  readonly read: boolean;
  readonly write: boolean;
  readonly append: boolean;
}

/** Test seams: replace fs operations to simulate failures (e.g. EXDEV). */
export interface FileServiceHooks {
  readonly rename?: (from: string, to: string) => Promise<void>;
}

// ------------------------------------------------------------ validation

function bad(what: string, detail: string): HostError {
  return pathError('InvalidArgument', what, detail);
}
function asBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw bad(what, 'must be a boolean');
  return v;
}
function asInt(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw bad(what, `must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}
function asBytes(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw bad(what, 'must be bytes');
  return v;
}
function asTicks(v: unknown, what: string): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > MAX_TICKS) throw bad(what, 'must be DateTime ticks');
  return v;
}
function asMode(v: unknown, what: string): number {
  return asInt(v, what, 0, 0o7777);
}
function asStrings(v: unknown, what: string): string[] {
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

function entryKind(st: BigIntStats | Stats): EntryKind {
  if (st.isSymbolicLink()) return EntryKind.Symlink;
  if (st.isFile()) return EntryKind.File;
  if (st.isDirectory()) return EntryKind.Directory;
  return EntryKind.Other;
}

function entryOf(st: BigIntStats): Entry {
  return {
    kind: entryKind(st),
    size: Number(st.size),
    lastWriteTime: statTicks(st),
    mode: Number(st.mode & 0o7777n),
  };
}

/** Bytes a 7-bit-prefixed string takes on the wire. */
function stringSize(s: string): number {
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

function tempNameFor(target: string): string {
  const base = path.basename(target).slice(0, 64);
  return path.join(path.dirname(target), `.${base}.${randomHex6()}.tmp`);
}

/**
 * Where a whole-file write lands, given the `lstat` of the path (`st`): a
 * symlink is written through (the real file is replaced, not the link), a
 * dangling one is replaced itself. `existing` is what is there now (stat).
 */
function writeTarget(
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
function followed(p: string, st: BigIntStats | null): BigIntStats | Stats | null {
  if (!st?.isSymbolicLink()) return st;
  try {
    return statSync(p, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

async function tryLstat(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

function tryLstatSync(p: string): Stats | null {
  try {
    return lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if (errorCode(err) === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

function tryStatSync(p: string): Stats | null {
  try {
    return statSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if (errorCode(err) === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

async function tryStat(p: string): Promise<Stats | null> {
  try {
    return await stat(p);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw fsError(err, p);
  }
}

/** Creates `dir` and its parents; a file in the way is `NotDirectory`. */
async function ensureDirectory(dir: string): Promise<void> {
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

/** Best-effort fsync of a directory so a rename into it is durable. */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Not all file systems allow it; the data itself is already synced.
  }
}

/** `mkdir -p`, synchronously; a file in the way is `NotDirectory`. */
function ensureDirectorySync(dir: string): void {
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

/** {@link syncDirectory}, synchronously (for file systems where fsync returns at once). */
function syncDirectorySync(dir: string): void {
  if (process.platform === 'win32') return;
  try {
    const fd = openSync(dir, fsc.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // As syncDirectory: best effort.
  }
}

function fsyncInPool(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/**
 * Directory fsyncs, grouped: renames into a directory that complete while
 * one of its fsyncs runs share the next one (group commit), so N files
 * written into one directory at once cost about two directory fsyncs, not N.
 * Each caller still returns only after an fsync that began after its rename.
 */
class DirectorySyncs {
  private readonly dirs = new Map<string, { running: Promise<void> | null; queued: Promise<void> | null }>();

  sync(dir: string): Promise<void> {
    let s = this.dirs.get(dir);
    if (!s) {
      s = { running: null, queued: null };
      this.dirs.set(dir, s);
    }
    if (s.queued) return s.queued;
    if (!s.running) {
      s.running = this.run(dir, s);
      return s.running;
    }
    const state = s;
    s.queued = s.running.then(() => {
      state.queued = null;
      state.running = this.run(dir, state);
      return state.running;
    });
    return s.queued;
  }

  private async run(dir: string, s: { running: Promise<void> | null; queued: Promise<void> | null }) {
    try {
      await syncDirectory(dir);
    } finally {
      s.running = null;
      if (!s.queued) this.dirs.delete(dir);
    }
  }
}

/** statfs magic numbers of Linux file systems that live in memory: fsync does nothing there. */
const MEMORY_FS_TYPES: ReadonlySet<number> = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

/**
 * Writes at most this many bytes with synchronous calls in one go
 * (WriteAllBytes): open, write, chmod, utimes, rename without a thread-pool
 * round trip each. Larger writes keep the event loop free while they run.
 */
export const SMALL_WRITE = 256 * 1024;
/** ReadAllBytes reads files up to this size synchronously (open, fstat, read, close). */
export const SMALL_READ = 256 * 1024;

function writeAllSync(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    const n = writeSync(fd, data, done, data.length - done, done);
    if (n <= 0) throw pathError('IOError', 'write', 'no progress writing');
    done += n;
  }
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

async function writeFully(fh: FileHandle, data: Uint8Array, position: number | null): Promise<void> {
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
async function openRegular(p: string, flags: number, mode = 0o666): Promise<{ fh: FileHandle; st: Stats }> {
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

interface FinishOptions {
  readonly mode: number;
  readonly mtime: number | null;
  readonly atime?: number;
  /** Ownership to give the new file (only applied when running as root). */
  readonly owner?: { uid: number; gid: number } | null;
}

// ------------------------------------------------------------ the service

export class FileService {
  private readonly paths: PathResolver;
  private readonly handles = new Map<number, OpenHandle>();
  private pendingOpens = 0;
  private nextHandle = 1;
  private epoch = 0;
  private readonly renameImpl: (from: string, to: string) => Promise<void>;
  /** The test seam's rename, when one was given (the synchronous paths use renameSync otherwise). */
  private readonly renameHook: ((from: string, to: string) => Promise<void>) | null;
  private readonly dirSyncs = new DirectorySyncs();
  /** Per device: whether fsync returns at once there (a memory file system). */
  private readonly freeFsync = new Map<number, boolean>();
  private readonly handlers: Handlers;

  constructor(
    private readonly ctx: HostContext,
    hooks: FileServiceHooks = {},
  ) {
    this.paths = new PathResolver(ctx);
    this.renameImpl = hooks.rename ?? rename;
    this.renameHook = hooks.rename ?? null;
    this.handlers = {
      FileExists: (a) => this.fileExists(a),
      DirectoryExists: (a) => this.directoryExists(a),
      GetFileInfo: (a) => this.getFileInfo(a),
      ListDirectory: (a) => this.listDirectory(a),
      CreateDirectory: (a) => this.createDirectory(a),
      DeleteFile: (a) => this.deleteFile(a),
      DeleteDirectory: (a) => this.deleteDirectory(a),
      ClearDirectory: (a) => this.clearDirectory(a),
      Move: (a) => this.move(a),
      CopyFile: (a) => this.copyFile(a),
      ReadAllBytes: (a) => this.readAllBytes(a),
      WriteAllBytes: (a) => this.writeAllBytes(a),
      OpenFile: (a) => this.openFile(a),
      ReadFile: (a) => this.readFile(a),
      WriteFile: (a) => this.writeFile(a),
      CloseFile: (a) => this.closeFile(a),
      GetFileHash: (a) => this.getFileHash(a),
      SetLastWriteTime: (a) => this.setLastWriteTime(a),
      SetMode: (a) => this.setMode(a),
      DeleteFiles: (a) => this.deleteFiles(a),
    };
  }

  /** Number of file handles currently open in this session. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** Runs one file command. Every failure is a `HostError`. */
  async handle<N extends FileCommandName>(name: N, args: RequestOf<N>): Promise<ResultOf<N>> {
    if (typeof name !== 'string' || !isFileCommand(name)) {
      throw new HostError('UnknownCommand', `UnknownCommand: ${String(name)}: not a file command`);
    }
    if (args === null || typeof args !== 'object') throw bad(name, 'arguments must be an object');
    const fn = this.handlers[name] as (a: RequestOf<N>) => Promise<ResultOf<N>>;
    try {
      return await fn(args);
    } catch (err) {
      if (err instanceof HostError) throw err;
      if (errorCode(err) !== undefined) throw fsError(err, name);
      const what = err instanceof Error ? err.message : String(err);
      throw new HostError('Internal', `Internal: ${name}: ${what}`);
    }
  }

  /** Closes every open handle (session end). */
  async closeAll(): Promise<void> {
    this.epoch++;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.allSettled(all.map((h) => h.fh.close()));
  }

  // ---------------------------------------------------------- queries

  // Queries, deletes and metadata changes of one path are a few synchronous
  // system calls each: cheaper than one promise round trip through libuv's
  // thread pool, and the host is one process per session.

  private async fileExists(a: RequestOf<'FileExists'>): Promise<ResultOf<'FileExists'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: true });
    return { exists: followed(p, st)?.isFile() === true };
  }

  private async directoryExists(a: RequestOf<'DirectoryExists'>): Promise<ResultOf<'DirectoryExists'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: true });
    return { exists: followed(p, st)?.isDirectory() === true };
  }

  private async getFileInfo(a: RequestOf<'GetFileInfo'>): Promise<ResultOf<'GetFileInfo'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: false });
    if (st) return entryOf(st);
    try {
      return entryOf(lstatSync(p, { bigint: true })); // to report why it failed (or it appeared meanwhile)
    } catch (err) {
      throw fsError(err, p);
    }
  }

  private async listDirectory(a: RequestOf<'ListDirectory'>): Promise<ResultOf<'ListDirectory'>> {
    const root = this.paths.resolve(a.path, { followFinal: true });
    const recursive = asBool(a.recursive, 'recursive');
    const include = asStrings(a.include, 'include');
    const exclude = asStrings(a.exclude, 'exclude');
    const compile = (globs: string[], what: string): ((name: string) => boolean) | null => {
      if (globs.length === 0) return null;
      try {
        return loadPicomatch()(globs, { dot: true, windows: false });
      } catch (err) {
        throw bad(what, `invalid glob: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const isIncluded = compile(include, 'include');
    const isExcluded = compile(exclude, 'exclude');

    const st = tryStatSync(root);
    if (!st) throw pathError('NotFound', root, 'no such file or directory');
    if (!st.isDirectory()) throw pathError('NotDirectory', root, 'not a directory');

    const limit = this.ctx.maxMessageSize;
    let size = REPLY_HEADER_SIZE + 4;
    const entries: ListEntry[] = [];
    const stack: { abs: string; rel: string }[] = [{ abs: root, rel: '' }];

    // One synchronous lstat per entry: a few microseconds each, against a
    // thread-pool round trip and a promise each.
    const processBatch = (dirAbs: string, rel: string, names: string[]): void => {
      for (const n of names) {
        let est: BigIntStats | undefined;
        try {
          est = lstatSync(path.join(dirAbs, n), { bigint: true, throwIfNoEntry: false });
        } catch (err) {
          if (errorCode(err) !== 'ENOTDIR') throw fsError(err, path.join(dirAbs, n));
        }
        if (!est) continue; // vanished meanwhile
        const name = rel === '' ? n : `${rel}/${n}`;
        if (isExcluded?.(name)) continue;
        if (!isIncluded || isIncluded(name)) {
          size += stringSize(name) + ENTRY_FIXED_SIZE;
          if (size > limit) {
            throw pathError(
              'TooLarge',
              root,
              `listing exceeds the message limit of ${limit} bytes; narrow it with include/exclude or list non-recursively`,
            );
          }
          entries.push({ name, ...entryOf(est) });
        }
        if (recursive && est.isDirectory()) stack.push({ abs: path.join(dirAbs, n), rel: name });
      }
    };

    for (let next = stack.pop(); next; next = stack.pop()) {
      const { abs, rel } = next;
      let dir: Awaited<ReturnType<typeof opendir>>;
      try {
        dir = await opendir(abs, { bufferSize: LIST_BATCH });
      } catch (err) {
        const code = errorCode(err);
        if (rel !== '' && (code === 'ENOENT' || code === 'ENOTDIR')) continue;
        throw fsError(err, abs);
      }
      let batch: string[] = [];
      try {
        for await (const d of dir) {
          batch.push(d.name);
          if (batch.length >= LIST_BATCH) {
            processBatch(abs, rel, batch);
            batch = [];
          }
        }
      } catch (err) {
        throw fsError(err, abs);
      }
      processBatch(abs, rel, batch);
    }
    entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    return { entries };
  }

  // ---------------------------------------------------------- directories

  private async createDirectory(a: RequestOf<'CreateDirectory'>): Promise<ResultOf<'CreateDirectory'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    try {
      mkdirSync(p, { recursive: true });
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EEXIST') throw pathError('AlreadyExists', p, 'exists and is not a directory');
      if (code === 'ENOTDIR') throw pathError('NotDirectory', p, 'a parent of the path is not a directory');
      throw fsError(err, p);
    }
    return {};
  }

  private async deleteDirectory(a: RequestOf<'DeleteDirectory'>): Promise<ResultOf<'DeleteDirectory'>> {
    const p = this.paths.resolve(a.path, { followFinal: false });
    const recursive = asBool(a.recursive, 'recursive');
    const st = tryLstatSync(p);
    if (!st) return {};
    if (!st.isDirectory()) throw pathError('NotDirectory', p, 'not a directory');
    if (isFilesystemRoot(p)) throw pathError('AccessDenied', p, 'refusing to delete a file-system root');
    try {
      if (recursive) await rm(p, { recursive: true, force: true, maxRetries: 2 });
      else await rmdir(p);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOTEMPTY' || code === 'EEXIST') throw pathError('NotEmpty', p, 'directory not empty');
      if (code === 'ENOENT') return {};
      throw fsError(err, p);
    }
    return {};
  }

  private async clearDirectory(a: RequestOf<'ClearDirectory'>): Promise<ResultOf<'ClearDirectory'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    if (isFilesystemRoot(p)) throw pathError('AccessDenied', p, 'refusing to clear a file-system root');
    try {
      await mkdir(p, { recursive: true });
    } catch (err) {
      const code = errorCode(err);
      if (code === 'EEXIST' || code === 'ENOTDIR') throw pathError('NotDirectory', p, 'not a directory');
      throw fsError(err, p);
    }
    // Read a batch of names, close the directory, delete them, repeat:
    // deleting while a directory stream is open can skip entries on some
    // file systems.
    for (;;) {
      const names: string[] = [];
      try {
        const dir = await opendir(p, { bufferSize: 128 });
        for await (const d of dir) {
          names.push(d.name);
          if (names.length >= CLEAR_BATCH) break;
        }
      } catch (err) {
        throw fsError(err, p);
      }
      if (names.length === 0) return {};
      for (const n of names) {
        const child = path.join(p, n);
        try {
          await rm(child, { recursive: true, force: true, maxRetries: 2 });
        } catch (err) {
          throw fsError(err, child);
        }
      }
    }
  }

  // ---------------------------------------------------------- deletes

  /** Deletes the file (or symlink) `p`, whose lstat is `st`. */
  private deleteOne(p: string, st: Stats | BigIntStats | null = tryLstatSync(p)): void {
    if (!st) return;
    if (st.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
    try {
      unlinkSync(p);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      throw fsError(err, p);
    }
  }

  private async deleteFile(a: RequestOf<'DeleteFile'>): Promise<ResultOf<'DeleteFile'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: false });
    this.deleteOne(p, st ?? tryLstatSync(p));
    return {};
  }

  /** Validates every path first, then deletes in order; stops at the first error. */
  private async deleteFiles(a: RequestOf<'DeleteFiles'>): Promise<ResultOf<'DeleteFiles'>> {
    const list = asStrings(a.paths, 'paths');
    const resolved: string[] = [];
    for (const p of list) resolved.push(this.paths.resolve(p, { followFinal: false }));
    for (const p of resolved) this.deleteOne(p);
    return {};
  }

  // ---------------------------------------------------------- move & copy

  private async move(a: RequestOf<'Move'>): Promise<ResultOf<'Move'>> {
    const src = this.paths.resolve(a.source, { followFinal: false, what: 'source' });
    const dst = this.paths.resolve(a.destination, { followFinal: false, what: 'destination' });
    const overwrite = asBool(a.overwrite, 'overwrite');
    const sst = tryLstatSync(src);
    if (!sst) throw pathError('NotFound', src, 'no such file or directory');
    if (src === dst) return {};
    const dstSt = tryLstatSync(dst);
    // On a case-insensitive file system `a` → `A` finds the source itself: a rename, not a clash.
    const sameEntry =
      dstSt !== null &&
      dstSt.ino === sst.ino &&
      dstSt.dev === sst.dev &&
      src.toLowerCase() === dst.toLowerCase();
    if (dstSt && !sameEntry) {
      if (!overwrite) throw pathError('AlreadyExists', dst, 'already exists');
      if (dstSt.isDirectory())
        throw pathError('IsDirectory', dst, 'is a directory; Move replaces files only');
      if (sst.isDirectory())
        throw pathError('AlreadyExists', dst, 'already exists; a directory never replaces a file');
    }
    if (sst.isDirectory() && (dst + path.sep).startsWith(src + path.sep)) {
      throw pathError('InvalidArgument', dst, 'cannot move a directory into itself');
    }
    ensureDirectorySync(path.dirname(dst));
    try {
      if (this.renameHook) await this.renameHook(src, dst);
      else renameSync(src, dst);
    } catch (err) {
      const code = errorCode(err);
      if (code !== 'EXDEV') throw fsError(err, code === 'ENOENT' ? src : dst);
      await this.crossDeviceMove(src, dst, sst);
    }
    await this.syncDirectoryOf(path.dirname(dst), dstSt?.dev ?? sst.dev);
    return {};
  }

  /** Move across file systems: copy to a temp name beside `dst`, rename, delete `src`. */
  private async crossDeviceMove(src: string, dst: string, sst: Stats): Promise<void> {
    if (sst.isFile()) {
      await this.atomicReplace(dst, (tmp) => copyFile(src, tmp, fsc.COPYFILE_EXCL), {
        mode: sst.mode & 0o7777,
        mtime: sst.mtimeMs / 1000,
        atime: sst.atimeMs / 1000,
      });
    } else {
      const tmp = tempNameFor(dst);
      try {
        await this.copyTree(src, tmp);
        await this.renameImpl(tmp, dst);
      } catch (err) {
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw fsError(err, dst);
      }
    }
    try {
      await rm(src, { recursive: true, force: true, maxRetries: 2 });
    } catch (err) {
      throw fsError(err, src);
    }
  }

  /** Copies a tree (no symlink following); special files are `Unsupported`. */
  private async copyTree(src: string, dst: string): Promise<void> {
    const st = await lstat(src);
    if (st.isSymbolicLink()) {
      await symlink(await readlink(src), dst);
    } else if (st.isFile()) {
      await copyFile(src, dst, fsc.COPYFILE_EXCL);
      await chmod(dst, st.mode & 0o7777);
      await utimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
    } else if (st.isDirectory()) {
      await mkdir(dst, { mode: 0o700 });
      for await (const d of await opendir(src))
        await this.copyTree(path.join(src, d.name), path.join(dst, d.name));
      await chmod(dst, st.mode & 0o7777);
      await utimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
    } else {
      throw pathError('Unsupported', src, 'cannot move a special file across file systems');
    }
  }

  private async copyFile(a: RequestOf<'CopyFile'>): Promise<ResultOf<'CopyFile'>> {
    const src = this.paths.resolve(a.source, { followFinal: true, what: 'source' });
    const dstIn = this.paths.resolve(a.destination, { followFinal: true, what: 'destination' });
    const overwrite = asBool(a.overwrite, 'overwrite');
    const sst = await tryStat(src);
    if (!sst) throw pathError('NotFound', src, 'no such file or directory');
    if (sst.isDirectory()) throw pathError('IsDirectory', src, 'is a directory; CopyFile copies files only');
    if (!sst.isFile()) throw pathError('InvalidArgument', src, 'not a regular file');
    const { path: dst, existing: dstSt } = writeTarget(dstIn, tryLstatSync(dstIn));
    if (dstSt) {
      if (dstSt.isDirectory()) throw pathError('IsDirectory', dst, 'is a directory');
      if (!overwrite) throw pathError('AlreadyExists', dst, 'already exists');
    }
    await ensureDirectory(path.dirname(dst));
    await this.atomicReplace(
      dst,
      async (tmp) => {
        try {
          await copyFile(src, tmp, fsc.COPYFILE_EXCL);
        } catch (err) {
          throw fsError(err, errorCode(err) === 'ENOENT' ? src : dst);
        }
      },
      { mode: sst.mode & 0o7777, mtime: sst.mtimeMs / 1000, atime: sst.atimeMs / 1000 },
    );
    return {};
  }

  // ---------------------------------------------------------- whole files

  private async readAllBytes(a: RequestOf<'ReadAllBytes'>): Promise<ResultOf<'ReadAllBytes'>> {
    const { path: p, st: lst } = this.paths.lookup(a.path, { followFinal: true });
    const limit = this.ctx.maxMessageSize - ENVELOPE_ALLOWANCE;
    const pre = lst?.isSymbolicLink() ? tryStatSync(p) : lst;
    if (pre?.isFile()) {
      const size = Number(pre.size);
      if (size > limit) throw this.tooLarge(p, size, limit);
      if (size <= SMALL_READ) return { data: this.readSmall(p, limit) };
    }
    const { fh, st } = await openRegular(p, fsc.O_RDONLY);
    try {
      if (st.size > limit) throw this.tooLarge(p, st.size, limit);
      const buf = Buffer.allocUnsafe(st.size);
      const n = await readFully(fh, buf, 0);
      return { data: n === buf.length ? buf : buf.subarray(0, n) };
    } catch (err) {
      throw fsError(err, p);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /**
   * Reads a small regular file with synchronous calls. O_NONBLOCK: should
   * the file have been swapped for a FIFO since it was examined, the open
   * returns at once (and fstat refuses it) instead of blocking the host.
   */
  private readSmall(p: string, limit: number): Buffer {
    let fd: number;
    try {
      fd = openSync(p, fsc.O_RDONLY | (fsc.O_NONBLOCK ?? 0));
    } catch (err) {
      throw fsError(err, p);
    }
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
      if (!st.isFile()) throw pathError('InvalidArgument', p, 'not a regular file');
      if (st.size > limit) throw this.tooLarge(p, st.size, limit);
      const buf = Buffer.allocUnsafe(st.size);
      let n = 0;
      while (n < buf.length) {
        const got = readSync(fd, buf, n, buf.length - n, n);
        if (got === 0) break;
        n += got;
      }
      return n === buf.length ? buf : buf.subarray(0, n);
    } catch (err) {
      throw fsError(err, p);
    } finally {
      try {
        closeSync(fd);
      } catch {
        // read-only: nothing to lose
      }
    }
  }

  private tooLarge(p: string, size: number, limit: number): HostError {
    return pathError(
      'TooLarge',
      p,
      `${size} bytes exceeds the message limit of ${limit} bytes; use OpenFile/ReadFile`,
    );
  }

  private async writeAllBytes(a: RequestOf<'WriteAllBytes'>): Promise<ResultOf<'WriteAllBytes'>> {
    const resolved = this.paths.lookup(a.path, { followFinal: true });
    const data = asBytes(a.data, 'data');
    const mode = a.mode === null ? null : asMode(a.mode, 'mode');
    const ticks = a.lastWriteTime === null ? null : asTicks(a.lastWriteTime, 'lastWriteTime');
    const { path: p, existing } = writeTarget(resolved.path, resolved.st);
    if (existing?.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
    const finish: FinishOptions = {
      mode: mode ?? (existing ? Number(existing.mode) & 0o7777 : 0o644),
      mtime: ticks === null ? null : ticksToSeconds(ticks),
      owner: existing ? { uid: Number(existing.uid), gid: Number(existing.gid) } : null,
    };
    if (data.length <= SMALL_WRITE) {
      await this.replaceSmall(p, data, finish);
      return {};
    }
    ensureDirectorySync(path.dirname(p));
    await this.atomicReplace(
      p,
      async (tmp) => {
        const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
        try {
          await writeFully(fh, data, 0);
        } finally {
          await fh.close();
        }
      },
      finish,
    );
    return {};
  }

  /**
   * {@link atomicReplace} for small data, with synchronous calls in one go:
   * the temp file is created (O_EXCL, beside the target; missing parents
   * are made only when that fails), written, chmod'ed, timestamped,
   * fsync'ed, closed and renamed over `target`, then the directory is
   * fsync'ed. On any failure the temp file is removed and `target` is
   * untouched. Where fsync does real work (not on tmpfs) the two fsyncs run
   * in the thread pool, so a slow disk does not stall the session's other
   * requests, and directory fsyncs are grouped (DirectorySyncs).
   */
  private async replaceSmall(target: string, data: Uint8Array, opts: FinishOptions): Promise<void> {
    const dir = path.dirname(target);
    const tmp = tempNameFor(target);
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;
    let fd: number;
    try {
      fd = openSync(tmp, flags, 0o600);
    } catch (err) {
      const code = errorCode(err);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fsError(err, target);
      ensureDirectorySync(dir); // a file in the way is NotDirectory
      try {
        fd = openSync(tmp, flags, 0o600);
      } catch (again) {
        throw fsError(again, target);
      }
    }
    let open = true;
    let free = false;
    try {
      writeAllSync(fd, data);
      const { owner } = opts;
      if (owner && process.getuid?.() === 0 && (owner.uid !== 0 || owner.gid !== 0)) {
        try {
          fchownSync(fd, owner.uid, owner.gid);
        } catch {
          // as atomicReplace: keeping the owner is best effort
        }
      }
      fchmodSync(fd, opts.mode);
      if (opts.mtime !== null) futimesSync(fd, opts.atime ?? Date.now() / 1000, opts.mtime);
      free = this.fsyncIsFree(fstatSync(fd).dev, dir);
      if (free) fsyncSync(fd);
      else await fsyncInPool(fd);
      open = false;
      closeSync(fd);
      if (this.renameHook) await this.renameHook(tmp, target);
      else renameSync(tmp, target);
    } catch (err) {
      if (open) {
        try {
          closeSync(fd);
        } catch {
          // the temp file goes anyway
        }
      }
      try {
        unlinkSync(tmp);
      } catch {
        // already gone
      }
      throw fsError(err, target);
    }
    if (free) syncDirectorySync(dir);
    else await this.dirSyncs.sync(dir);
  }

  /** Makes a rename into `dir` (on device `dev`) durable. */
  private async syncDirectoryOf(dir: string, dev: number | bigint): Promise<void> {
    if (this.fsyncIsFree(Number(dev), dir)) syncDirectorySync(dir);
    else await this.dirSyncs.sync(dir);
  }

  /**
   * Whether fsync returns at once on device `dev` (holding `dir`): a memory
   * file system (tmpfs, ramfs), where the synchronous call costs a
   * microsecond and a thread-pool round trip would cost far more.
   */
  private fsyncIsFree(dev: number, dir: string): boolean {
    let free = this.freeFsync.get(dev);
    if (free === undefined) {
      free = false;
      if (process.platform === 'linux') {
        try {
          free = MEMORY_FS_TYPES.has(Number(statfsSync(dir).type));
        } catch {
          // unknown: treat it as a disk
        }
      }
      if (this.freeFsync.size >= 64) this.freeFsync.clear();
      this.freeFsync.set(dev, free);
    }
    return free;
  }

  /**
   * Creates `target` atomically: `fill` creates the temp file, which is then
   * chmod'ed, timestamped, fsync'ed and renamed over `target`. On any failure
   * the temp file is removed and `target` is untouched.
   */
  private async atomicReplace(
    target: string,
    fill: (tmp: string) => Promise<void>,
    opts: FinishOptions,
  ): Promise<void> {
    const tmp = tempNameFor(target);
    try {
      await fill(tmp);
      const fh = await open(tmp, fsc.O_RDWR);
      try {
        const { owner } = opts;
        if (owner && process.getuid?.() === 0 && (owner.uid !== 0 || owner.gid !== 0)) {
          await fh.chown(owner.uid, owner.gid).catch(() => {});
        }
        await fh.chmod(opts.mode);
        if (opts.mtime !== null) {
          const atime = opts.atime ?? (await fh.stat()).atimeMs / 1000;
          await fh.utimes(atime, opts.mtime);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.renameImpl(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw fsError(err, target);
    }
    await this.dirSyncs.sync(path.dirname(target));
  }

  // ---------------------------------------------------------- handles

  private async openFile(a: RequestOf<'OpenFile'>): Promise<ResultOf<'OpenFile'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const fileMode = asInt(a.fileMode, 'fileMode', FileMode.CreateNew, FileMode.Append) as FileMode;
    const access = asInt(a.fileAccess, 'fileAccess', FileAccess.Read, FileAccess.ReadWrite) as FileAccess;
    const read = (access & FileAccess.Read) !== 0;
    const write = (access & FileAccess.Write) !== 0;
    const modeName = Object.keys(FileMode).find((k) => FileMode[k as keyof typeof FileMode] === fileMode);
    if (fileMode === FileMode.Append && access !== FileAccess.Write) {
      throw pathError('InvalidArgument', p, 'FileMode.Append requires FileAccess.Write');
    }
    if (!write && fileMode !== FileMode.Open && fileMode !== FileMode.OpenOrCreate) {
      throw pathError('InvalidArgument', p, `FileMode.${modeName} requires write access`);
    }
    let flags = read && write ? fsc.O_RDWR : write ? fsc.O_WRONLY : fsc.O_RDONLY;
    switch (fileMode) {
      case FileMode.CreateNew:
        flags |= fsc.O_CREAT | fsc.O_EXCL;
        break;
      case FileMode.Create:
        flags |= fsc.O_CREAT | fsc.O_TRUNC;
        break;
      case FileMode.Open:
        break;
      case FileMode.OpenOrCreate:
        flags |= fsc.O_CREAT;
        break;
      case FileMode.Truncate:
        flags |= fsc.O_TRUNC;
        break;
      case FileMode.Append:
        flags |= fsc.O_CREAT | fsc.O_APPEND;
        break;
    }
    const max = this.ctx.maxOpenFiles;
    if (this.handles.size + this.pendingOpens >= max) {
      throw pathError(
        'LimitExceeded',
        p,
        `too many open files: the limit is ${max} per session (maxOpenFiles)`,
      );
    }
    this.pendingOpens++;
    const epoch = this.epoch;
    try {
      if (fileMode === FileMode.CreateNew && (await tryLstat(p))) {
        throw pathError('AlreadyExists', p, 'already exists');
      }
      await ensureParentForCreate(p, flags);
      const { fh } = await openRegular(p, flags);
      if (epoch !== this.epoch) {
        await fh.close().catch(() => {});
        throw pathError('Cancelled', p, 'the session closed its files while opening');
      }
      const id = this.allocateHandle();
      this.handles.set(id, { fh, path: p, read, write, append: fileMode === FileMode.Append });
      return { handle: id };
    } finally {
      this.pendingOpens--;
    }
  }

  private allocateHandle(): number {
    for (;;) {
      const id = this.nextHandle;
      this.nextHandle = id >= MAX_HANDLE ? 1 : id + 1;
      if (!this.handles.has(id)) return id;
    }
  }

  private lookup(handle: unknown): { id: number; h: OpenHandle } {
    const id = asInt(handle, 'handle', -0x80000000, MAX_HANDLE);
    const h = this.handles.get(id);
    if (!h) throw pathError('InvalidHandle', `handle ${id}`, 'not an open file handle');
    return { id, h };
  }

  private handleError(err: unknown, id: number, h: OpenHandle): HostError {
    if (errorCode(err) === 'EBADF' && !this.handles.has(id)) {
      return pathError('InvalidHandle', `handle ${id}`, 'closed while in use');
    }
    return fsError(err, h.path);
  }

  private async readFile(a: RequestOf<'ReadFile'>): Promise<ResultOf<'ReadFile'>> {
    const { id, h } = this.lookup(a.handle);
    if (!h.read) throw pathError('AccessDenied', h.path, `handle ${id} was opened without read access`);
    const position = asInt(a.position, 'position', 0, Number.MAX_SAFE_INTEGER);
    const count = asInt(a.count, 'count', 0, 0x7fffffff);
    const limit = this.ctx.maxMessageSize - ENVELOPE_ALLOWANCE;
    if (count > limit) {
      throw pathError('TooLarge', h.path, `count ${count} exceeds the message limit of ${limit} bytes`);
    }
    const buf = Buffer.allocUnsafe(count);
    try {
      const n = await readFully(h.fh, buf, position);
      return { data: n === count ? buf : buf.subarray(0, n) };
    } catch (err) {
      throw this.handleError(err, id, h);
    }
  }

  private async writeFile(a: RequestOf<'WriteFile'>): Promise<ResultOf<'WriteFile'>> {
    const { id, h } = this.lookup(a.handle);
    if (!h.write) throw pathError('AccessDenied', h.path, `handle ${id} was opened without write access`);
    const position = asInt(a.position, 'position', 0, Number.MAX_SAFE_INTEGER);
    const data = asBytes(a.data, 'data');
    try {
      // O_APPEND handles always write at the end; position is ignored.
      await writeFully(h.fh, data, h.append ? null : position);
    } catch (err) {
      throw this.handleError(err, id, h);
    }
    return {};
  }

  private async closeFile(a: RequestOf<'CloseFile'>): Promise<ResultOf<'CloseFile'>> {
    const { id, h } = this.lookup(a.handle);
    this.handles.delete(id);
    try {
      await h.fh.close();
    } catch (err) {
      throw fsError(err, h.path);
    }
    return {};
  }

  // ---------------------------------------------------------- metadata

  private async getFileHash(a: RequestOf<'GetFileHash'>): Promise<ResultOf<'GetFileHash'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const algo = HASH_NAMES[a.algorithm as HashAlgorithm];
    if (typeof a.algorithm !== 'number' || !algo) {
      throw pathError('InvalidArgument', p, `unknown hash algorithm ${String(a.algorithm)}`);
    }
    const { fh } = await openRegular(p, fsc.O_RDONLY);
    try {
      const hash = createHash(algo);
      const buf = Buffer.allocUnsafe(STREAM_CHUNK);
      let position = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, position);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        position += bytesRead;
      }
      return { hash: hash.digest() };
    } catch (err) {
      throw fsError(err, p);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  private async setLastWriteTime(a: RequestOf<'SetLastWriteTime'>): Promise<ResultOf<'SetLastWriteTime'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const ticks = asTicks(a.lastWriteTime, 'lastWriteTime');
    try {
      const st = statSync(p);
      utimesSync(p, st.atimeMs / 1000, ticksToSeconds(ticks));
    } catch (err) {
      throw fsError(err, p);
    }
    return {};
  }

  private async setMode(a: RequestOf<'SetMode'>): Promise<ResultOf<'SetMode'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const mode = asMode(a.mode, 'mode');
    try {
      chmodSync(p, mode);
    } catch (err) {
      throw fsError(err, p);
    }
    return {};
  }
}

/** OpenFile with a creating mode creates missing parents, like the other writers. */
async function ensureParentForCreate(p: string, flags: number): Promise<void> {
  if ((flags & fsc.O_CREAT) === 0) return;
  if (await tryStat(path.dirname(p))) return;
  await ensureDirectory(path.dirname(p));
}
