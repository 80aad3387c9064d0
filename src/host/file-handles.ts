/**
 * The session's open file handles: OpenFile, ReadFile, WriteFile, CloseFile
 * (PROTOCOL.md §5.2). Handles count up from 1 and are not reused at once;
 * at most `maxOpenFiles` are open (beyond it `LimitExceeded`); an unknown
 * handle is `InvalidArgument`.
 *
 * Each handle keeps its own position, as a .NET FileStream does: a read or
 * write at an explicit position moves it there, `−1` continues from it.
 * The I/O itself is always positional (pread/pwrite), so two requests on
 * one handle never race on the kernel's file offset.
 */
import { constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { FileAccess, FileMode, type RequestOf, type ResultOf, TOKEN_SIZE } from '../protocol/index.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import {
  asBytes,
  asInt,
  ensureParentForCreate,
  openRegular,
  readFully,
  tryLstat,
  writeFully,
} from './fs-util.js';
import type { PathResolver } from './paths.js';
import type { HostContext, HostError } from './types.js';

const MAX_HANDLE = 0x7fffffff;
/** `position` −1: the handle's current position. */
const CURRENT = -1;
/** A ReadFile result is `token | int32 count | data`: this much of the message is not data. */
const READ_RESULT_OVERHEAD = TOKEN_SIZE + 4;

interface OpenHandle {
  readonly fh: FileHandle;
  readonly path: string;
  readonly read: boolean;
  readonly write: boolean;
  readonly append: boolean;
  /** Where `position −1` reads or writes next. */
  position: number;
}

const FILE_MODE_NAMES = Object.fromEntries(Object.entries(FileMode).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;

/** open(2) flags for a .NET FileMode and access. */
function openFlags(fileMode: FileMode, read: boolean, write: boolean): number {
  const base = read && write ? fsc.O_RDWR : write ? fsc.O_WRONLY : fsc.O_RDONLY;
  switch (fileMode) {
    case FileMode.CreateNew:
      return base | fsc.O_CREAT | fsc.O_EXCL;
    case FileMode.Create:
      return base | fsc.O_CREAT | fsc.O_TRUNC;
    case FileMode.Open:
      return base;
    case FileMode.OpenOrCreate:
      return base | fsc.O_CREAT;
    case FileMode.Truncate:
      return base | fsc.O_TRUNC;
    case FileMode.Append:
      return base | fsc.O_CREAT | fsc.O_APPEND;
  }
}

export class FileHandles {
  private readonly handles = new Map<number, OpenHandle>();
  private pendingOpens = 0;
  private nextHandle: number;
  /** Bumped by closeAll(): an open that finishes after it closes its file again. */
  private epoch = 0;

  constructor(
    private readonly ctx: HostContext,
    private readonly paths: PathResolver,
  ) {
    const first = ctx.firstHandle;
    this.nextHandle = Number.isSafeInteger(first) && first! >= 1 && first! <= MAX_HANDLE ? first! : 1;
  }

  /** Number of file handles currently open in this session. */
  get size(): number {
    return this.handles.size;
  }

  async open(a: RequestOf<'OpenFile'>): Promise<ResultOf<'OpenFile'>> {
    const p = this.paths.resolve(a.path, { followFinal: true });
    const fileMode = asInt(a.fileMode, 'fileMode', FileMode.CreateNew, FileMode.Append) as FileMode;
    const access = asInt(a.access, 'access', FileAccess.Read, FileAccess.ReadWrite) as FileAccess;
    const read = (access & FileAccess.Read) !== 0;
    const write = (access & FileAccess.Write) !== 0;
    if (fileMode === FileMode.Append && access !== FileAccess.Write) {
      throw pathError('InvalidArgument', p, 'FileMode.Append requires FileAccess.Write');
    }
    if (!write && fileMode !== FileMode.Open && fileMode !== FileMode.OpenOrCreate) {
      throw pathError('InvalidArgument', p, `FileMode.${FILE_MODE_NAMES[fileMode]} requires write access`);
    }
    const flags = openFlags(fileMode, read, write);
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
        throw pathError('Canceled', p, 'the session closed its files while opening');
      }
      const id = this.allocate();
      this.handles.set(id, { fh, path: p, read, write, append: fileMode === FileMode.Append, position: 0 });
      return { handle: id };
    } finally {
      this.pendingOpens--;
    }
  }

  /** Reads up to `maxCount` bytes, clamped so the reply fits the message limit; empty at EOF. */
  async read(a: RequestOf<'ReadFile'>): Promise<ResultOf<'ReadFile'>> {
    const { id, h } = this.lookup(a.handle);
    if (!h.read) throw pathError('AccessDenied', h.path, `handle ${id} was opened without read access`);
    const at = this.position(a.position, h);
    const asked = asInt(a.maxCount, 'maxCount', 0, 0x7fffffff);
    const count = Math.min(asked, Math.max(0, this.ctx.maxMessageSize - READ_RESULT_OVERHEAD));
    const buf = Buffer.allocUnsafe(count);
    try {
      const n = await readFully(h.fh, buf, at);
      h.position = at + n;
      return { data: n === count ? buf : buf.subarray(0, n) };
    } catch (err) {
      throw this.handleError(err, id, h);
    }
  }

  async write(a: RequestOf<'WriteFile'>): Promise<ResultOf<'WriteFile'>> {
    const { id, h } = this.lookup(a.handle);
    if (!h.write) throw pathError('AccessDenied', h.path, `handle ${id} was opened without write access`);
    const at = this.position(a.position, h);
    const data = asBytes(a.data, 'data');
    try {
      // O_APPEND handles always write at the end; position is ignored.
      await writeFully(h.fh, data, h.append ? null : at);
      if (!h.append) h.position = at + data.length;
    } catch (err) {
      throw this.handleError(err, id, h);
    }
    return {};
  }

  async close(a: RequestOf<'CloseFile'>): Promise<ResultOf<'CloseFile'>> {
    const { id, h } = this.lookup(a.handle);
    this.handles.delete(id);
    try {
      await h.fh.close();
    } catch (err) {
      throw fsError(err, h.path);
    }
    return {};
  }

  /** Closes every open handle (session end). */
  async closeAll(): Promise<void> {
    this.epoch++;
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.allSettled(all.map((h) => h.fh.close()));
  }

  private position(v: unknown, h: OpenHandle): number {
    const at = asInt(v, 'position', CURRENT, Number.MAX_SAFE_INTEGER);
    return at === CURRENT ? h.position : at;
  }

  private allocate(): number {
    for (;;) {
      const id = this.nextHandle;
      this.nextHandle = id >= MAX_HANDLE ? 1 : id + 1;
      if (!this.handles.has(id)) return id;
    }
  }

  private lookup(handle: unknown): { id: number; h: OpenHandle } {
    const id = asInt(handle, 'handle', -0x80000000, MAX_HANDLE);
    const h = this.handles.get(id);
    if (!h) {
      const lostBy = this.ctx.handlesLostBy;
      if (lostBy && id >= 1 && id < (this.ctx.firstHandle ?? 1))
        throw pathError(
          'HostCrashed',
          `handle ${id}`,
          `opened in a host process of this session that ended (${lostBy}); its file was closed — open it again`,
        );
      throw pathError('InvalidArgument', `handle ${id}`, 'not an open file handle');
    }
    return { id, h };
  }

  private handleError(err: unknown, id: number, h: OpenHandle): HostError {
    if (errorCode(err) === 'EBADF' && !this.handles.has(id)) {
      return pathError('InvalidArgument', `handle ${id}`, 'closed while in use');
    }
    return fsError(err, h.path);
  }
}
