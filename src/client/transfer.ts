/**
 * upload / download / sync: a file or a whole tree, many files in flight,
 * small files in one message (WriteAllBytes/ReadAllBytes), large ones as
 * streams, each verified by SHA-256 and replaced atomically (remote: temp +
 * Move; local: temp + rename).
 */
import { createHash, type Hash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  constants as fsc,
  fstatSync,
  openSync,
  readdirSync,
  readSync,
  statSync,
} from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { dateToTicks, type FileEntry, ticksToDate } from '../protocol/index.js';
import type { ClientContext } from './context.js';
import { noop } from './context.js';
import { entryName, entryType, relativeName } from './entries.js';
import { abortReason, isRemoteError, OutpostError, RemoteError, VerificationError } from './errors.js';
import { checkConcurrency, forEachLimited } from './limit.js';
import { TEMP_SUFFIX } from './paths.js';
import { RemoteReadStream, RemoteWriteStream } from './streams.js';

/** Progress of an upload, download or sync. */
export interface TransferProgress {
  /** The file being transferred, relative to the tree's root (`''` for a single file). */
  file: string;
  /** Bytes transferred so far, over all files. */
  bytes: number;
  /** Bytes to transfer in total. */
  totalBytes: number;
  /** Files completed. */
  files: number;
  /** Files to transfer in total. */
  totalFiles: number;
}

/** Options of {@link AgentClient.upload} and {@link AgentClient.download}. */
export interface TransferOptions {
  /** Called as bytes move (several times per file). */
  onProgress?: (progress: TransferProgress) => void;
  /** Compare SHA-256 of source and target before the target is replaced (default true). */
  verify?: boolean;
  /** Stops the transfer; a file in progress is not committed (its temp file is removed). */
  signal?: AbortSignal;
  /** Files in flight at once (default 4). */
  concurrency?: number;
  /** Bytes per request for streamed files (default 1 MiB). */
  chunkSize?: number;
  /** Requests in flight per streamed file (default 8). */
  window?: number;
}

/** What a transfer did. */
export interface TransferResult {
  /** Files transferred. */
  files: number;
  /** Bytes transferred. */
  bytes: number;
  /** Directories created (trees only). */
  directories: number;
  /** Entries not transferred: symbolic links and special files (relative names). */
  skipped: string[];
}

/** Options of {@link AgentClient.sync}. */
export interface SyncOptions extends TransferOptions {
  /** Delete remote entries that do not exist locally (default false). */
  delete?: boolean;
  /** How to decide a file differs when sizes match: last-write time (default) or SHA-256. */
  compare?: 'mtime' | 'hash';
}

/** What a sync did. */
export interface SyncResult {
  /** Files sent (relative names, `/`-separated). */
  uploaded: string[];
  /** Remote entries deleted (relative names). */
  deleted: string[];
  /** Files left alone because they matched. */
  unchanged: number;
  /** Bytes sent. */
  bytes: number;
}

export interface LocalFile {
  rel: string;
  abs: string;
  size: number;
  mode: number;
  mtimeMs: number;
}

export interface LocalTree {
  files: LocalFile[];
  dirs: string[];
  skipped: string[];
}

/** A remote entry of a listed tree, with its name relative to the tree's root (`/`-separated). */
interface TreeEntry extends FileEntry {
  rel: string;
}

/**
 * Local files up to this size are read with synchronous calls when uploaded
 * (open, fstat, read, close: a few microseconds from the page cache, where
 * the promise API costs four thread-pool round trips, most of the client's
 * CPU in a tree of small files). Larger files are read asynchronously.
 */
const SYNC_READ_MAX = 64 * 1024;
/** walkLocal stats synchronously and yields to the event loop after this many entries. */
const WALK_YIELD_EVERY = 256;

/**
 * Reads a small local file synchronously; null when it is no longer a
 * regular file of at most `max` bytes (the caller then reads it the
 * asynchronous way). O_NONBLOCK so a file swapped for a FIFO cannot block.
 */
function readSmallSync(abs: string, max: number): Buffer | null {
  const fd = openSync(abs, fsc.O_RDONLY | (fsc.O_NONBLOCK ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > max) return null;
    const buf = Buffer.allocUnsafe(st.size);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return n === buf.length ? buf : buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Whether a name is one of the SDK's own temp files (never transferred). */
function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX);
}

/**
 * Walks a local directory (symlinks are not followed; they and special files
 * are skipped). Directories are read and files stat'ed with synchronous
 * calls (a few microseconds each from the cache, where a thread-pool round
 * trip per call costs more than the call), with a yield to the event loop
 * every few hundred entries.
 */
export async function walkLocal(root: string, signal?: AbortSignal): Promise<LocalTree> {
  const tree: LocalTree = { files: [], dirs: [], skipped: [] };
  let stats = 0;
  const visit = async (abs: string, rel: string): Promise<void> => {
    if (signal?.aborted) throw abortReason(signal);
    const entries = readdirSync(abs, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      const childAbs = abs === root ? path.join(abs, e.name) : `${abs}${path.sep}${e.name}`;
      if (e.isDirectory()) {
        tree.dirs.push(childRel);
        await visit(childAbs, childRel);
      } else if (e.isFile()) {
        if (isTempName(e.name)) continue;
        if (++stats % WALK_YIELD_EVERY === 0) {
          await yieldToLoop();
          if (signal?.aborted) throw abortReason(signal);
        }
        const st = statSync(childAbs);
        tree.files.push({
          rel: childRel,
          abs: childAbs,
          size: st.size,
          mode: st.mode & 0o7777,
          mtimeMs: st.mtimeMs,
        });
      } else {
        tree.skipped.push(childRel);
      }
    }
  };
  await visit(root, '');
  return tree;
}

/**
 * Names the entries of one unfiltered recursive listing after its root. The
 * wire gives full paths only; the root's own spelling is the shortest parent
 * among them (its direct children have it as their parent), so no extra
 * request is needed and whatever spelling the agent uses is kept.
 */
function nameTree(ctx: ClientContext, entries: FileEntry[]): TreeEntry[] {
  let root: string | null = null;
  for (const e of entries) {
    const parent = ctx.paths.dirname(e.fullPath);
    if (root === null || parent.length < root.length) root = parent;
  }
  return entries.map((e) => ({
    ...e,
    rel: (root !== null && relativeName(root, e.fullPath)) || entryName(e),
  }));
}

/** Lists a remote tree; when one recursive listing exceeds the message limit, walks it directory by directory. */
export async function listRemoteTree(
  ctx: ClientContext,
  root: string,
  signal?: AbortSignal,
): Promise<TreeEntry[]> {
  try {
    const r = await ctx.call(
      'ListDirectory',
      { path: root, recursive: true, include: [], exclude: [] },
      { path: root, signal },
    );
    return nameTree(ctx, r.entries);
  } catch (err) {
    if (!isRemoteError(err, 'TooLarge')) throw err;
  }
  const out: TreeEntry[] = [];
  const queue: { path: string; rel: string }[] = [{ path: root, rel: '' }];
  for (let dir = queue.shift(); dir !== undefined; dir = queue.shift()) {
    const r = await ctx.call(
      'ListDirectory',
      { path: dir.path, recursive: false, include: [], exclude: [] },
      { path: dir.path, signal },
    );
    for (const e of r.entries) {
      const rel = dir.rel === '' ? entryName(e) : `${dir.rel}/${entryName(e)}`;
      out.push({ ...e, rel });
      if (entryType(e) === 'directory') queue.push({ path: e.fullPath, rel });
    }
  }
  return out;
}

class Progress {
  bytes = 0;
  files = 0;
  constructor(
    readonly totalBytes: number,
    readonly totalFiles: number,
    private readonly cb: ((p: TransferProgress) => void) | undefined,
  ) {}
  add(file: string, bytes: number): void {
    this.bytes += bytes;
    this.report(file);
  }
  done(file: string): void {
    this.files++;
    this.report(file);
  }
  private report(file: string): void {
    this.cb?.({
      file,
      bytes: this.bytes,
      totalBytes: this.totalBytes,
      files: this.files,
      totalFiles: this.totalFiles,
    });
  }
}

/** Hashes (and counts) what flows through a pipeline. */
/** Passes chunks through, counting progress and feeding `hash` (only when verifying). */
function tap(hash: Hash | null, progress: Progress, rel: string) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      hash?.update(chunk);
      progress.add(rel, chunk.length);
      yield chunk;
    }
  };
}

async function remoteSha256(ctx: ClientContext, p: string, signal?: AbortSignal): Promise<string> {
  const r = await ctx.call('GetFileHash', { path: p, algorithm: 'sha256' }, { path: p, signal });
  return r.hash.toLowerCase();
}

interface TransferSettings {
  verify: boolean;
  signal: AbortSignal | undefined;
  chunkSize: number | undefined;
  window: number | undefined;
}

function settings(options: TransferOptions): TransferSettings {
  return {
    verify: options.verify ?? true,
    signal: options.signal,
    chunkSize: options.chunkSize,
    window: options.window,
  };
}

/** Sends one local file to `remote` (atomically, verified). */
async function uploadFile(
  ctx: ClientContext,
  file: LocalFile,
  remote: string,
  s: TransferSettings,
  progress: Progress,
): Promise<void> {
  const mtime = new Date(Math.round(file.mtimeMs));
  const small = ctx.chunkSize(s.chunkSize, Buffer.byteLength(remote) * 2);
  if (file.size <= small) {
    const data =
      (file.size <= SYNC_READ_MAX ? readSmallSync(file.abs, SYNC_READ_MAX) : null) ??
      (await fsp.readFile(file.abs, { signal: s.signal }));
    if (data.length > small) return uploadFile(ctx, { ...file, size: data.length }, remote, s, progress);
    const args = { contents: data, lastWriteUtc: dateToTicks(mtime), mode: file.mode };
    if (!s.verify) {
      await ctx.call('WriteAllBytes', { path: remote, ...args }, { path: remote, signal: s.signal });
    } else {
      const tmp = ctx.paths.tempFor(remote);
      try {
        await ctx.call('WriteAllBytes', { path: tmp, ...args }, { path: remote, signal: s.signal });
        const expected = createHash('sha256').update(data).digest('hex');
        const actual = await remoteSha256(ctx, tmp, s.signal);
        if (actual !== expected) throw new VerificationError(remote, expected, actual);
        await ctx.call(
          'Move',
          { source: tmp, target: remote, overwrite: true },
          { path: remote, signal: s.signal },
        );
      } catch (err) {
        await ctx.call('DeleteFile', { path: tmp }).catch(noop);
        throw err;
      }
    }
    progress.add(file.rel, data.length);
    progress.done(file.rel);
    return;
  }
  const hash = s.verify ? createHash('sha256') : null;
  const chunk = ctx.chunkSize(s.chunkSize);
  const ws = new RemoteWriteStream(
    ctx,
    remote,
    { chunkSize: chunk, window: s.window, mode: file.mode, mtime, ...(s.signal ? { signal: s.signal } : {}) },
    {
      beforeCommit: async (tmp) => {
        if (!hash) return;
        const expected = hash.digest('hex');
        const actual = await remoteSha256(ctx, tmp, s.signal);
        if (actual !== expected) throw new VerificationError(remote, expected, actual);
      },
    },
  );
  await pipeline(createReadStream(file.abs, { highWaterMark: chunk }), tap(hash, progress, file.rel), ws);
  progress.done(file.rel);
}

/** upload(): a local file or directory tree to `remote`. */
export async function upload(
  ctx: ClientContext,
  local: string,
  remote: string,
  options: TransferOptions = {},
): Promise<TransferResult> {
  const s = settings(options);
  const concurrency = checkConcurrency(options.concurrency, 4);
  const st = await fsp.stat(local).catch((err: NodeJS.ErrnoException) => {
    throw new OutpostError(err.code ?? 'IOError', `cannot read the local path ${local}: ${err.message}`, {
      path: local,
      cause: err,
    });
  });
  if (st.isFile()) {
    const progress = new Progress(st.size, 1, options.onProgress);
    const file = { rel: '', abs: local, size: st.size, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
    await uploadFile(ctx, file, remote, s, progress);
    return { files: 1, bytes: progress.bytes, directories: 0, skipped: [] };
  }
  if (!st.isDirectory())
    throw new OutpostError('InvalidArgument', `${local} is neither a file nor a directory`, { path: local });
  const tree = await walkLocal(local, s.signal);
  await ctx.call('CreateDirectory', { path: remote }, { path: remote, signal: s.signal });
  // WriteAllBytes creates a file's missing parents on the agent: only
  // directories without children need a request of their own. They share
  // the files' window rather than running as a phase before them.
  const parents = new Set<string>();
  for (const name of [...tree.dirs, ...tree.files.map((f) => f.rel)]) {
    const slash = name.lastIndexOf('/');
    if (slash > 0) parents.add(name.slice(0, slash));
  }
  const leaves = tree.dirs.filter((d) => !parents.has(d));
  const total = tree.files.reduce((n, f) => n + f.size, 0);
  const progress = new Progress(total, tree.files.length, options.onProgress);
  const work: (LocalFile | string)[] = [...leaves, ...tree.files];
  await forEachLimited(
    work,
    concurrency,
    async (item) => {
      if (typeof item !== 'string')
        return uploadFile(ctx, item, ctx.paths.join(remote, item.rel), s, progress);
      const p = ctx.paths.join(remote, item);
      await ctx.call('CreateDirectory', { path: p }, { path: p, signal: s.signal });
    },
    s.signal,
  );
  return {
    files: tree.files.length,
    bytes: progress.bytes,
    directories: tree.dirs.length + 1,
    skipped: tree.skipped,
  };
}

interface RemoteFile {
  rel: string;
  path: string;
  size: number;
  mode: number;
  mtime: Date;
}

/** Fetches one remote file to `local` (temp + rename, verified). */
async function downloadFile(
  ctx: ClientContext,
  file: RemoteFile,
  local: string,
  s: TransferSettings,
  progress: Progress,
): Promise<void> {
  const dir = path.dirname(local);
  await fsp.mkdir(dir, { recursive: true });
  const existing = await fsp.lstat(local).catch(() => null);
  if (existing?.isDirectory())
    throw new OutpostError(
      'IsDirectory',
      `the local target ${local} is a directory; name the file to create`,
      {
        path: local,
      },
    );
  const tmp = path.join(
    dir,
    `.${path.basename(local).slice(0, 64)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`,
  );
  const expectedP = s.verify ? remoteSha256(ctx, file.path, s.signal) : null;
  expectedP?.catch(noop);
  try {
    const hash = expectedP ? createHash('sha256') : null;
    let data: Buffer | null = null;
    if (file.size <= ctx.chunkSize(s.chunkSize)) {
      try {
        const r = await ctx.call('ReadAllBytes', { path: file.path }, { path: file.path, signal: s.signal });
        data = Buffer.from(r.contents.buffer, r.contents.byteOffset, r.contents.byteLength);
      } catch (err) {
        if (!isRemoteError(err, 'TooLarge')) throw err; // it grew meanwhile: stream it
      }
    }
    if (data) {
      hash?.update(data);
      await fsp.writeFile(tmp, data, { flag: 'wx', mode: 0o600 });
      progress.add(file.rel, data.length);
    } else {
      const rs = new RemoteReadStream(ctx, file.path, {
        ...(s.chunkSize !== undefined ? { chunkSize: s.chunkSize } : {}),
        ...(s.window !== undefined ? { window: s.window } : {}),
      });
      await pipeline(
        rs,
        tap(hash, progress, file.rel),
        createWriteStream(tmp, { flags: 'wx', mode: 0o600 }),
        {
          ...(s.signal ? { signal: s.signal } : {}),
        },
      );
    }
    if (expectedP && hash) {
      const expected = await expectedP;
      const actual = hash.digest('hex');
      if (actual !== expected) throw new VerificationError(local, expected, actual);
    }
    const fh = await fsp.open(tmp, 'r+');
    try {
      // An agent without POSIX modes reports 0: keep the temp file's own bits then.
      if ((file.mode & 0o7777) !== 0) await fh.chmod(file.mode & 0o7777);
      // Half a microsecond past the millisecond, so float rounding in utimes cannot land below it.
      const seconds = (file.mtime.getTime() + 0.0005) / 1000;
      await fh.utimes(seconds, seconds);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (s.signal?.aborted) throw abortReason(s.signal);
    await fsp.rename(tmp, local);
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(noop);
    throw err;
  }
  progress.done(file.rel);
}

/** download(): a remote file or directory tree to `local`. */
export async function download(
  ctx: ClientContext,
  remote: string,
  local: string,
  options: TransferOptions = {},
): Promise<TransferResult> {
  const s = settings(options);
  const concurrency = checkConcurrency(options.concurrency, 4);
  const { entry: st } = await ctx.call('GetFileInfo', { path: remote }, { path: remote, signal: s.signal });
  if (!st)
    throw new RemoteError('NotFound', `${remote}: no such file or directory`, 'GetFileInfo', {
      path: remote,
    });
  const type = entryType(st);
  let isDir = type === 'directory';
  if (type === 'symlink')
    isDir = (await ctx.call('DirectoryExists', { path: remote }, { path: remote, signal: s.signal })).exists;
  if (!isDir) {
    const size = type === 'symlink' ? Number.POSITIVE_INFINITY : st.size;
    const progress = new Progress(Number.isFinite(size) ? size : 0, 1, options.onProgress);
    // A symlink's own mode says nothing of its target's permissions.
    const mode = type === 'symlink' ? 0 : st.mode;
    const file = { rel: '', path: remote, size, mode, mtime: ticksToDate(st.lastWriteUtc) };
    await downloadFile(ctx, file, local, s, progress);
    return { files: 1, bytes: progress.bytes, directories: 0, skipped: [] };
  }
  const entries = await listRemoteTree(ctx, remote, s.signal);
  const files: RemoteFile[] = [];
  const dirs: string[] = [];
  const skipped: string[] = [];
  for (const e of entries) {
    const type = entryType(e);
    if (type === 'directory') dirs.push(e.rel);
    else if (type === 'file' && !isTempName(entryName(e)))
      files.push({
        rel: e.rel,
        path: e.fullPath,
        size: e.size,
        mode: e.mode,
        mtime: ticksToDate(e.lastWriteUtc),
      });
    else if (type !== 'file') skipped.push(e.rel);
  }
  await fsp.mkdir(local, { recursive: true });
  for (const d of dirs) await fsp.mkdir(path.join(local, ...d.split('/')), { recursive: true });
  const total = files.reduce((n, f) => n + f.size, 0);
  const progress = new Progress(total, files.length, options.onProgress);
  await forEachLimited(
    files,
    concurrency,
    (f) => downloadFile(ctx, f, path.join(local, ...f.rel.split('/')), s, progress),
    s.signal,
  );
  return { files: files.length, bytes: progress.bytes, directories: dirs.length + 1, skipped };
}

function sha256File(abs: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  return pipeline(
    createReadStream(abs),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) hash.update(chunk);
    },
    signal ? { signal } : {},
  ).then(() => hash.digest('hex'));
}

/** sync(): makes the remote directory match the local one, sending only what differs. */
export async function sync(
  ctx: ClientContext,
  local: string,
  remote: string,
  options: SyncOptions = {},
): Promise<SyncResult> {
  const s = settings(options);
  const concurrency = checkConcurrency(options.concurrency, 4);
  const compare = options.compare ?? 'mtime';
  if (compare !== 'mtime' && compare !== 'hash')
    throw new TypeError(`compare must be 'mtime' or 'hash', got ${JSON.stringify(compare)}`);
  const st = await fsp.stat(local);
  if (!st.isDirectory())
    throw new OutpostError('NotDirectory', `sync needs a local directory; ${local} is not one`, {
      path: local,
    });
  const tree = await walkLocal(local, s.signal);
  const remoteExists = (
    await ctx.call('DirectoryExists', { path: remote }, { path: remote, signal: s.signal })
  ).exists;
  const entries = remoteExists ? await listRemoteTree(ctx, remote, s.signal) : [];
  const remoteByName = new Map(entries.map((e) => [e.rel, e]));
  const localFiles = new Set(tree.files.map((f) => f.rel));
  const localDirs = new Set(tree.dirs);

  // Remote entries with no local counterpart, or of another kind.
  const deleted: string[] = [];
  if (options.delete) {
    const isDir = (e: TreeEntry) => entryType(e) === 'directory';
    const stale = entries.filter((e) => (isDir(e) ? !localDirs.has(e.rel) : !localFiles.has(e.rel)));
    // Only the top-most stale directories need deleting.
    const staleDirs = stale.filter(isDir).map((e) => e.rel);
    const covered = (name: string) => staleDirs.some((d) => name.startsWith(`${d}/`));
    const dirsToDelete = staleDirs.filter((d) => !covered(d));
    const filesToDelete = stale.filter((e) => !isDir(e) && !covered(e.rel)).map((e) => e.rel);
    const fullPath = (rel: string) => remoteByName.get(rel)?.fullPath ?? ctx.paths.join(remote, rel);
    await ctx.deleteFiles(filesToDelete.map(fullPath), s.signal);
    await forEachLimited(
      dirsToDelete,
      concurrency,
      async (d) => {
        const p = fullPath(d);
        await ctx.call('DeleteDirectory', { path: p, recursive: true }, { path: p, signal: s.signal });
      },
      s.signal,
    );
    deleted.push(...filesToDelete, ...dirsToDelete);
    for (const name of deleted) remoteByName.delete(name);
  }

  // Decide what to send.
  const changed: LocalFile[] = [];
  const sameSize: LocalFile[] = [];
  for (const f of tree.files) {
    const r = remoteByName.get(f.rel);
    if (!r || entryType(r) !== 'file' || r.size !== f.size) changed.push(f);
    else sameSize.push(f);
  }
  let unchanged = 0;
  if (compare === 'mtime') {
    for (const f of sameSize) {
      const r = remoteByName.get(f.rel)!;
      if (ticksToDate(r.lastWriteUtc).getTime() !== Math.round(f.mtimeMs)) changed.push(f);
      else unchanged++;
    }
  } else {
    await forEachLimited(
      sameSize,
      concurrency,
      async (f) => {
        const [a, b] = await Promise.all([
          sha256File(f.abs, s.signal),
          remoteSha256(ctx, ctx.paths.join(remote, f.rel), s.signal),
        ]);
        if (a !== b) changed.push(f);
        else unchanged++;
      },
      s.signal,
    );
  }
  changed.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));

  // Directories that are missing remotely (files create their own parents).
  const missingDirs = tree.dirs.filter((d) => {
    const r = remoteByName.get(d);
    return !r || entryType(r) !== 'directory';
  });
  if (!remoteExists) await ctx.call('CreateDirectory', { path: remote }, { path: remote, signal: s.signal });
  await forEachLimited(
    missingDirs,
    concurrency * 4,
    async (d) => {
      const p = ctx.paths.join(remote, d);
      await ctx.call('CreateDirectory', { path: p }, { path: p, signal: s.signal });
    },
    s.signal,
  );

  const progress = new Progress(
    changed.reduce((n, f) => n + f.size, 0),
    changed.length,
    options.onProgress,
  );
  await forEachLimited(
    changed,
    concurrency,
    (f) => uploadFile(ctx, f, ctx.paths.join(remote, f.rel), s, progress),
    s.signal,
  );
  return { uploaded: changed.map((f) => f.rel), deleted: deleted.sort(), unchanged, bytes: progress.bytes };
}
