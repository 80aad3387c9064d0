/**
 * The host's file service: the file commands of the catalog (PROTOCOL.md
 * §5.2, codes 2–20 and the DeleteFiles extension), one public method per
 * command, called from the handler table (handlers.ts). One instance per
 * session; it owns the session's open file handles (file-handles.ts).
 *
 * Decisions (see also docs/PROTOCOL.md):
 * - Errors are `HostError`s whose message is `<Kind>: <path>: <detail>`;
 *   errno codes map through the single table in fs-errors.ts.
 * - Paths resolve through the one resolver (paths.ts), which also applies
 *   the preserve-root guards to every delete, clear, move and replace.
 * - Only regular files are read, written, hashed or copied; directories are
 *   `IsDirectory`, other special files (FIFOs, devices) `InvalidArgument`.
 * - Whole-file writes (WriteAllBytes, CopyFile, cross-device Move) are atomic
 *   (atomic.ts). A symlinked target is written through (the link's target
 *   is replaced).
 * - One-path queries and metadata changes use synchronous fs calls: on a
 *   local file system each is cheaper than a promise through the thread
 *   pool, and the host is one process per session (docs/ARCHITECTURE.md).
 * - CreateDirectory on an existing non-directory is `AlreadyExists`.
 * - Move never replaces a directory: with `overwrite` an existing
 *   target directory is `IsDirectory`, and a directory source never
 *   replaces an existing file (`AlreadyExists`).
 * - SetMode and WriteAllBytes take permission bits; a full st_mode (type
 *   bits included, as FileEntry reports it) is accepted, its type ignored.
 *   On Windows only the read-only attribute (owner write bit) is honoured.
 * - lastWriteUtc is set through Node's utimes, which libuv truncates to
 *   whole microseconds: ticks are rounded to the nearest microsecond (reads
 *   keep full 100 ns precision).
 */
import { createHash } from 'node:crypto';
import {
  type BigIntStats,
  chmodSync,
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  type Stats,
  statSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { mkdir, open, opendir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { isHashAlgorithm, type RequestOf, type ResultOf, TOKEN_SIZE } from '../protocol/index.js';
import {
  AtomicWriter,
  type FinishOptions,
  type RenameHook,
  SMALL_WRITE,
  TempFiles,
  type TempReporter,
} from './atomic.js';
import { FileHandles } from './file-handles.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import {
  asBool,
  asBytes,
  asMode,
  asStrings,
  asTicks,
  ensureDirectorySync,
  entryOf,
  followed,
  openRegular,
  readFully,
  ticksToSeconds,
  tryLstatSync,
  tryStatSync,
  writeFully,
  writeTarget,
} from './fs-util.js';
import { listDirectory } from './listing.js';
import { MoveCopy } from './move-copy.js';
import { PathResolver } from './paths.js';
import type { HostContext, HostError } from './types.js';

/** A `bytes` result is `token | int32 count | data`: this much of the message is not data. */
const BYTES_RESULT_OVERHEAD = TOKEN_SIZE + 4;
/** Chunk size for streaming reads (hashing). */
const STREAM_CHUNK = 1024 * 1024;
/** ClearDirectory reads at most this many names before deleting them. */
const CLEAR_BATCH = 1024;
/** ReadAllBytes reads files up to this size synchronously (open, fstat, read, close). */
export const SMALL_READ = 256 * 1024;
export { SMALL_WRITE };

/** Test seams: replace fs operations to simulate failures (e.g. EXDEV). */
export interface FileServiceHooks {
  readonly rename?: (from: string, to: string) => Promise<void>;
}

export class FileService {
  readonly paths: PathResolver;
  readonly handles: FileHandles;
  private readonly atomic: AtomicWriter;
  private readonly moves: MoveCopy;

  constructor(
    private readonly ctx: HostContext,
    hooks: FileServiceHooks = {},
    temps: TempReporter | null = null,
  ) {
    this.paths = new PathResolver(ctx);
    this.handles = new FileHandles(ctx, this.paths);
    const hook: RenameHook = hooks.rename ?? null;
    this.atomic = new AtomicWriter(hook, new TempFiles(temps));
    this.moves = new MoveCopy(this.paths, this.atomic);
  }

  /** Number of file handles currently open in this session. */
  get openHandles(): number {
    return this.handles.size;
  }

  /** Temp files of atomic writes under way. */
  get tempFiles(): number {
    return this.atomic.temps.size;
  }

  /** Closes every open handle and removes the temp files of unfinished writes (session end). */
  async closeAll(): Promise<void> {
    await this.handles.closeAll();
    this.atomic.temps.removeAllSync();
  }

  // ---------------------------------------------------------- queries

  // Queries, deletes and metadata changes of one path are a few synchronous
  // system calls each: cheaper than one promise round trip through libuv's
  // thread pool, and the host is one process per session.

  async fileExists(a: RequestOf<'FileExists'>): Promise<ResultOf<'FileExists'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: true });
    return { exists: followed(p, st)?.isFile() === true };
  }

  async directoryExists(a: RequestOf<'DirectoryExists'>): Promise<ResultOf<'DirectoryExists'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: true });
    return { exists: followed(p, st)?.isDirectory() === true };
  }

  /** The entry of `path` itself (a symlink describes the link), or null when there is none. */
  async getFileInfo(a: RequestOf<'GetFileInfo'>): Promise<ResultOf<'GetFileInfo'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: false });
    if (st) return { entry: entryOf(p, st) };
    let again: BigIntStats | undefined;
    try {
      // lookup() swallows every failure; redo it to tell "absent" from "unreadable".
      again = lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      if (errorCode(err) !== 'ENOTDIR') throw fsError(err, p);
    }
    return { entry: again ? entryOf(p, again) : null };
  }

  async listDirectory(a: RequestOf<'ListDirectory'>): Promise<ResultOf<'ListDirectory'>> {
    const root = this.paths.resolve(a.path, { followFinal: true });
    return listDirectory(root, a, this.ctx.maxMessageSize);
  }

  // ---------------------------------------------------------- directories

  async createDirectory(a: RequestOf<'CreateDirectory'>): Promise<ResultOf<'CreateDirectory'>> {
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

  async deleteDirectory(a: RequestOf<'DeleteDirectory'>): Promise<ResultOf<'DeleteDirectory'>> {
    const p = this.paths.resolve(a.path, { followFinal: false, guard: 'delete' });
    const recursive = asBool(a.recursive, 'recursive');
    const st = tryLstatSync(p);
    if (!st) return {};
    if (!st.isDirectory()) throw pathError('NotDirectory', p, 'not a directory');
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

  async clearDirectory(a: RequestOf<'ClearDirectory'>): Promise<ResultOf<'ClearDirectory'>> {
    const p = this.paths.resolve(a.path, { followFinal: true, guard: 'clear' });
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

  async deleteFile(a: RequestOf<'DeleteFile'>): Promise<ResultOf<'DeleteFile'>> {
    const { path: p, st } = this.paths.lookup(a.path, { followFinal: false, guard: 'delete' });
    this.deleteOne(p, st ?? tryLstatSync(p));
    return {};
  }

  /** Validates every path first, then deletes in order; stops at the first error. */
  async deleteFiles(a: RequestOf<'DeleteFiles'>): Promise<ResultOf<'DeleteFiles'>> {
    const list = asStrings(a.paths, 'paths');
    const resolved: string[] = [];
    for (const p of list) resolved.push(this.paths.resolve(p, { followFinal: false, guard: 'delete' }));
    for (const p of resolved) this.deleteOne(p);
    return {};
  }

  // ---------------------------------------------------------- move & copy

  move(a: RequestOf<'Move'>): Promise<ResultOf<'Move'>> {
    return this.moves.move(a);
  }

  copyFile(a: RequestOf<'CopyFile'>): Promise<ResultOf<'CopyFile'>> {
    return this.moves.copyFile(a);
  }

  // ---------------------------------------------------------- whole files

  async readAllBytes(a: RequestOf<'ReadAllBytes'>): Promise<ResultOf<'ReadAllBytes'>> {
    const { path: p, st: lst } = this.paths.lookup(a.path, { followFinal: true });
    const limit = this.ctx.maxMessageSize - BYTES_RESULT_OVERHEAD;
    const pre = lst?.isSymbolicLink() ? tryStatSync(p) : lst;
    if (pre?.isFile()) {
      const size = Number(pre.size);
      if (size > limit) throw this.tooLarge(p, size, limit);
      if (size <= SMALL_READ) return { contents: this.readSmall(p, limit) };
    }
    const { fh, st } = await openRegular(p, fsc.O_RDONLY);
    try {
      if (st.size > limit) throw this.tooLarge(p, st.size, limit);
      const buf = Buffer.allocUnsafe(st.size);
      const n = await readFully(fh, buf, 0);
      return { contents: n === buf.length ? buf : buf.subarray(0, n) };
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

  async writeAllBytes(a: RequestOf<'WriteAllBytes'>): Promise<ResultOf<'WriteAllBytes'>> {
    const resolved = this.paths.lookup(a.path, { followFinal: true });
    const data = asBytes(a.contents, 'contents');
    const mode = a.mode === null ? null : asMode(a.mode, 'mode');
    const ticks = a.lastWriteUtc === null ? null : asTicks(a.lastWriteUtc, 'lastWriteUtc');
    const { path: p, existing } = writeTarget(resolved.path, resolved.st);
    if (existing?.isDirectory()) throw pathError('IsDirectory', p, 'is a directory');
    const finish: FinishOptions = {
      mode: mode ?? (existing ? Number(existing.mode) & 0o7777 : 0o644),
      mtime: ticks === null ? null : ticksToSeconds(ticks),
      owner: existing ? { uid: Number(existing.uid), gid: Number(existing.gid) } : null,
    };
    if (data.length <= SMALL_WRITE) {
      await this.atomic.replaceSmall(p, data, finish);
      return {};
    }
    ensureDirectorySync(path.dirname(p));
    await this.atomic.atomicReplace(
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

  // ---------------------------------------------------------- metadata

  /** The file's digest by algorithm name, as lower-case hex. */
  async getFileHash(a: RequestOf<'GetFileHash'>): Promise<ResultOf<'GetFileHash'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const algorithm = a.algorithm;
    if (typeof algorithm !== 'string' || !isHashAlgorithm(algorithm)) {
      throw pathError(
        'InvalidArgument',
        p,
        `unknown hash algorithm ${typeof algorithm === 'string' ? JSON.stringify(algorithm) : String(algorithm)} (sha256, sha1 or md5)`,
      );
    }
    const { fh } = await openRegular(p, fsc.O_RDONLY);
    try {
      const hash = createHash(algorithm);
      const buf = Buffer.allocUnsafe(STREAM_CHUNK);
      let position = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, position);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        position += bytesRead;
      }
      return { hash: hash.digest('hex') };
    } catch (err) {
      throw fsError(err, p);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async setLastWriteTime(a: RequestOf<'SetLastWriteTime'>): Promise<ResultOf<'SetLastWriteTime'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const ticks = asTicks(a.lastWriteUtc, 'lastWriteUtc');
    try {
      const st = statSync(p);
      utimesSync(p, st.atimeMs / 1000, ticksToSeconds(ticks));
    } catch (err) {
      throw fsError(err, p);
    }
    return {};
  }

  async setMode(a: RequestOf<'SetMode'>): Promise<ResultOf<'SetMode'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const mode = asMode(a.mode, 'mode');
    this.paths.guardMode(p, mode);
    try {
      chmodSync(p, mode);
    } catch (err) {
      throw fsError(err, p);
    }
    return {};
  }
}
