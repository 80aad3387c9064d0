/**
 * Atomic whole-file writes (WriteAllBytes, CopyFile, cross-device Move): a
 * unique temp file `.<name>.<random>.tmp` beside the target is written,
 * chmod'ed, timestamped, fsync'ed and renamed over the target, then the
 * directory is fsync'ed. Small writes do it all with synchronous calls in
 * one go (replaceSmall); fsync runs inline only where it is free (tmpfs),
 * else in the thread pool, directory fsyncs grouped (DirectorySyncs).
 */
import {
  closeSync,
  fchmodSync,
  fchownSync,
  constants as fsc,
  fstatSync,
  fsync,
  fsyncSync,
  futimesSync,
  openSync,
  renameSync,
  rmSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { errorCode, fsError, pathError } from './fs-errors.js';
import { ensureDirectorySync, tempNameFor } from './fs-util.js';

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

function writeAllSync(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    const n = writeSync(fd, data, done, data.length - done, done);
    if (n <= 0) throw pathError('IOError', 'write', 'no progress writing');
    done += n;
  }
}

export interface FinishOptions {
  readonly mode: number;
  readonly mtime: number | null;
  readonly atime?: number;
  /** Ownership to give the new file (only applied when running as root). */
  readonly owner?: { uid: number; gid: number } | null;
}

/**
 * Who learns of each temp file before it exists and after it is gone: the
 * agent, which removes what a host killed mid-write leaves
 * (HostControl.Temp). `created` returns a promise only when the news has
 * not yet left the process; the file is created after it resolves.
 */
export interface TempReporter {
  created(tmp: string): Promise<void> | null;
  removed(tmp: string): void;
}

/**
 * The temp files of this host's atomic writes that exist now (or are about
 * to): told to the reporter, and removed by {@link removeAllSync} when the
 * host shuts down in the middle of a write.
 */
export class TempFiles {
  private readonly live = new Set<string>();

  constructor(private readonly reporter: TempReporter | null = null) {}

  /**
   * A fresh temp name beside `target`, listed and reported; the caller
   * creates it after `ready` resolves (null: at once).
   */
  begin(target: string): { tmp: string; ready: Promise<void> | null } {
    const tmp = tempNameFor(target);
    this.live.add(tmp);
    return { tmp, ready: this.reporter?.created(tmp) ?? null };
  }

  /** `tmp` is renamed over its target or removed. */
  end(tmp: string): void {
    if (this.live.delete(tmp)) this.reporter?.removed(tmp);
  }

  get size(): number {
    return this.live.size;
  }

  /** Removes every temp file still listed (shutdown; the writes that made them will not finish). */
  removeAllSync(): void {
    for (const tmp of this.live) {
      try {
        rmSync(tmp, { recursive: true, force: true });
      } catch {
        // best effort: the agent tries again when the host has gone
      }
    }
    this.live.clear();
  }
}

/** How a rename is done: the test seam's function, or renameSync on the small paths. */
export type RenameHook = ((from: string, to: string) => Promise<void>) | null;

/** Atomic replacement of files, with the per-device "is fsync free here" memo. */
export class AtomicWriter {
  private readonly dirSyncs = new DirectorySyncs();
  /** Per device: whether fsync returns at once there (a memory file system). */
  private readonly freeFsync = new Map<number, boolean>();
  /** The asynchronous rename (the test seam's, else fs.promises.rename). */
  readonly renameAsync: (from: string, to: string) => Promise<void>;

  constructor(
    private readonly renameHook: RenameHook,
    readonly temps: TempFiles = new TempFiles(),
  ) {
    this.renameAsync = renameHook ?? rename;
  }

  /** Renames `from` over `to` (through the test seam when there is one). */
  async rename(from: string, to: string): Promise<void> {
    if (this.renameHook) await this.renameHook(from, to);
    else renameSync(from, to);
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
  async replaceSmall(target: string, data: Uint8Array, opts: FinishOptions): Promise<void> {
    const dir = path.dirname(target);
    const { tmp, ready } = this.temps.begin(target);
    if (ready) await ready;
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL;
    let fd: number;
    try {
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
    } catch (err) {
      this.temps.end(tmp);
      throw err;
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
      await this.rename(tmp, target);
      this.temps.end(tmp);
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
      this.temps.end(tmp);
      throw fsError(err, target);
    }
    if (free) syncDirectorySync(dir);
    else await this.dirSyncs.sync(dir);
  }

  /** Makes a rename into `dir` (on device `dev`) durable. */
  async syncDirectoryOf(dir: string, dev: number | bigint): Promise<void> {
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
  async atomicReplace(
    target: string,
    fill: (tmp: string) => Promise<void>,
    opts: FinishOptions,
  ): Promise<void> {
    const { tmp, ready } = this.temps.begin(target);
    try {
      if (ready) await ready;
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
      await this.renameAsync(tmp, target);
      this.temps.end(tmp);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      this.temps.end(tmp);
      throw fsError(err, target);
    }
    await this.dirSyncs.sync(path.dirname(target));
  }

  // ---------------------------------------------------------- handles
}
