/**
 * Streaming file transfer through handles (OpenFile/ReadFile/WriteFile),
 * with a window of requests in flight so throughput is not bound by the
 * round trip, and memory bounded by `window × chunkSize`.
 */
import { Readable, Writable } from 'node:stream';
import { dateToTicks, ErrorKind, FileAccess, FileMode } from '../protocol/index.js';
import { type ClientContext, checkWindow, noop } from './context.js';
import { raceAbort } from './dial.js';
import { entryType } from './entries.js';
import { abortReason, isRemoteError, RemoteError } from './errors.js';

/** Options of {@link AgentClient.createReadStream}. */
export interface ReadStreamOptions {
  /** First byte to read (default 0). */
  start?: number;
  /** Last byte to read, inclusive, like `fs.createReadStream` (default: to the end of the file). */
  end?: number;
  /** Bytes per ReadFile request (default 1 MiB; clamped to the agent's message limit). */
  chunkSize?: number;
  /** ReadFile requests kept in flight (default 8). */
  window?: number;
  /** Destroys the stream (and closes the remote handle) when it fires. */
  signal?: AbortSignal;
}

function readSettings(
  ctx: ClientContext,
  options: ReadStreamOptions,
): { chunk: number; window: number; start: number; end: number } {
  const chunk = ctx.chunkSize(options.chunkSize);
  const window = checkWindow(options.window);
  const start = options.start ?? 0;
  const end = options.end ?? Number.MAX_SAFE_INTEGER - 1;
  if (!Number.isSafeInteger(start) || start < 0)
    throw new RangeError(`start must be a non-negative integer, got ${String(options.start)}`);
  if (!Number.isSafeInteger(end) || end < start - 1)
    throw new RangeError(`end must be an integer ≥ start - 1 (it is inclusive), got ${String(options.end)}`);
  return { chunk, window, start, end };
}

/** A remote file as a Node `Readable` (also async-iterable), read through a handle. */
export class RemoteReadStream extends Readable {
  /** The remote path. */
  readonly path: string;
  /** Bytes delivered so far. */
  bytesRead = 0;
  private handle: number | null = null;
  private next: number;
  private readonly endExclusive: number;
  private readonly chunk: number;
  private readonly window: number;
  private readonly queue: { p: Promise<Buffer>; count: number }[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private want = false;
  private pumping = false;
  private eof = false;

  /** @internal Use {@link AgentClient.createReadStream}. */
  constructor(
    private readonly ctx: ClientContext,
    path: string,
    options: ReadStreamOptions = {},
  ) {
    // Validated before super(): a stream that throws here never opens anything.
    super({ highWaterMark: readSettings(ctx, options).chunk });
    const { chunk, window, start, end } = readSettings(ctx, options);
    this.path = path;
    this.chunk = chunk;
    this.window = window;
    this.next = start;
    this.endExclusive = end + 1;
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) process.nextTick(() => this.destroy(abortReason(signal, `reading ${path}`)));
      else {
        const onAbort = () => this.destroy(abortReason(signal, `reading ${path}`));
        signal.addEventListener('abort', onAbort, { once: true });
        this.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.ctx
      .call(
        'OpenFile',
        { path: this.path, fileMode: FileMode.Open, access: FileAccess.Read },
        { path: this.path },
      )
      .then(
        (r) => {
          this.handle = r.handle;
          callback();
        },
        (err: Error) => callback(err),
      );
  }

  override _read(): void {
    this.want = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.handle === null) return;
    this.pumping = true;
    try {
      while (this.want && !this.destroyed) {
        while (!this.eof && this.queue.length < this.window && this.next < this.endExclusive) {
          const count = Math.min(this.chunk, this.endExclusive - this.next);
          const p = this.ctx
            .call(
              'ReadFile',
              { handle: this.handle, position: this.next, maxCount: count },
              { path: this.path },
            )
            .then((r) => Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
          this.track(p);
          this.queue.push({ p, count });
          this.next += count;
        }
        const head = this.queue.shift();
        if (!head) {
          this.push(null);
          return;
        }
        const data = await head.p;
        if (this.destroyed) return;
        if (data.length < head.count) {
          // End of file: later requests (already in flight) read nothing; drop them.
          this.eof = true;
          this.queue.length = 0;
        }
        if (data.length > 0) {
          this.bytesRead += data.length;
          this.want = this.push(data);
        }
      }
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.pumping = false;
    }
  }

  private track(p: Promise<unknown>): void {
    const settled = p.then(noop, noop);
    this.inflight.add(settled);
    void settled.then(() => this.inflight.delete(settled));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = null;
    void (async () => {
      await Promise.all(this.inflight);
      if (handle !== null) await this.ctx.call('CloseFile', { handle }).catch(noop);
    })().then(() => callback(error));
  }
}

/** Options of {@link AgentClient.createWriteStream}. */
export interface WriteStreamOptions {
  /** Bytes per WriteFile request (default 1 MiB; clamped to the agent's message limit). */
  chunkSize?: number;
  /** WriteFile requests kept in flight (default 8). */
  window?: number;
  /** POSIX permission bits of the new file (default: the replaced file's, else the agent's default). */
  mode?: number;
  /** Last-write time of the new file. */
  mtime?: Date;
  /** Replace an existing file (default true); false fails with `AlreadyExists` on finish. */
  overwrite?: boolean;
  /** Destroys the stream (the temp file is deleted, the target untouched) when it fires. */
  signal?: AbortSignal;
}

/** @internal Extra hooks used by upload(). */
export interface WriteStreamHooks {
  /** Runs after the data is written and before the temp file is moved into place. */
  beforeCommit?: (tempPath: string) => Promise<void>;
}

function writeSettings(ctx: ClientContext, options: WriteStreamOptions): { chunk: number; window: number } {
  const chunk = ctx.chunkSize(options.chunkSize);
  const window = checkWindow(options.window);
  if (
    options.mode !== undefined &&
    (!Number.isInteger(options.mode) || options.mode < 0 || options.mode > 0o7777)
  )
    throw new RangeError(`mode must be permission bits between 0 and 0o7777, got ${String(options.mode)}`);
  if (
    options.mtime !== undefined &&
    !(options.mtime instanceof Date && Number.isFinite(options.mtime.getTime()))
  )
    throw new TypeError('mtime must be a valid Date');
  return { chunk, window };
}

/**
 * A remote file as a Node `Writable`. Data goes to a temp file beside the
 * target (`.<name>.<random>.outpost-tmp`); 'finish' is emitted only once the
 * temp file was closed and moved over the target, so the target is replaced
 * atomically or not at all. On error or abort the temp file is deleted.
 */
export class RemoteWriteStream extends Writable {
  /** The remote target path. */
  readonly path: string;
  /** The remote temp path the data is written to until finish. */
  readonly tempPath: string;
  /** Bytes the agent has confirmed. */
  bytesWritten = 0;
  private handle: number | null = null;
  private opened = false;
  private committed = false;
  private position = 0;
  private readonly chunk: number;
  private readonly window: number;
  private readonly buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: Error | null = null;
  private preservedMode: number | null = null;
  private readonly signal: AbortSignal | undefined;

  /** @internal Use {@link AgentClient.createWriteStream}. */
  constructor(
    private readonly ctx: ClientContext,
    path: string,
    private readonly options: WriteStreamOptions = {},
    private readonly hooks: WriteStreamHooks = {},
  ) {
    // Validated before super(): a stream that throws here never opens anything.
    super({ highWaterMark: writeSettings(ctx, options).chunk });
    const { chunk, window } = writeSettings(ctx, options);
    this.path = path;
    this.tempPath = ctx.paths.tempFor(path);
    this.chunk = chunk;
    this.window = window;
    const signal = options.signal;
    this.signal = signal;
    if (signal) {
      if (signal.aborted) process.nextTick(() => this.destroy(abortReason(signal, `writing ${path}`)));
      else {
        const onAbort = () => this.destroy(abortReason(signal, `writing ${path}`));
        signal.addEventListener('abort', onAbort, { once: true });
        this.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    }
  }

  override _construct(callback: (error?: Error | null) => void): void {
    const open = this.ctx
      .call(
        'OpenFile',
        { path: this.tempPath, fileMode: FileMode.CreateNew, access: FileAccess.Write },
        { path: this.tempPath },
      )
      .then((r) => {
        this.handle = r.handle;
        this.opened = true;
      });
    const info = this.ctx
      .call('GetFileInfo', { path: this.path }, { path: this.path })
      .then((r) => r.entry)
      .catch((err: unknown) => {
        if (isRemoteError(err, 'NotFound')) return null;
        throw err;
      });
    Promise.all([open, info]).then(
      ([, st]) => {
        if (st && entryType(st) === 'directory')
          return callback(
            new RemoteError(ErrorKind.IsDirectory, `${this.path}: is a directory`, 'OpenFile', {
              path: this.path,
            }),
          );
        // Keep the replaced file's permission bits (the wire's mode also carries its type bits).
        if (st && entryType(st) === 'file' && st.mode !== 0) this.preservedMode = st.mode & 0o7777;
        callback();
      },
      (err: Error) => {
        // Let the other request settle first so _destroy knows whether the temp file exists.
        void Promise.allSettled([open, info]).then(() => callback(err));
      },
    );
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    this.flush(false).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    void (async () => {
      await this.flush(true);
      await Promise.all(this.inflight);
      if (this.failure) throw this.failure;
      const handle = this.handle;
      this.handle = null;
      if (handle !== null) await this.ctx.call('CloseFile', { handle }, { path: this.tempPath });
      const mode = this.options.mode ?? this.preservedMode;
      if (mode !== null && mode !== undefined)
        await this.ctx.call('SetMode', { path: this.tempPath, mode }, { path: this.tempPath });
      if (this.options.mtime)
        await this.ctx.call(
          'SetLastWriteTime',
          { path: this.tempPath, lastWriteUtc: dateToTicks(this.options.mtime) },
          { path: this.tempPath },
        );
      await this.hooks.beforeCommit?.(this.tempPath);
      if (this.signal?.aborted) throw abortReason(this.signal, `writing ${this.path}`);
      await this.ctx.call(
        'Move',
        { source: this.tempPath, target: this.path, overwrite: this.options.overwrite ?? true },
        { path: this.path },
      );
      this.committed = true;
    })().then(() => callback(), callback);
  }

  /** Sends whole chunks (and with `all`, the remainder), waiting for a free slot in the window. */
  private async flush(all: boolean): Promise<void> {
    while (this.bufferedBytes >= this.chunk || (all && this.bufferedBytes > 0)) {
      const data = this.take(Math.min(this.chunk, this.bufferedBytes));
      while (this.inflight.size >= this.window) await Promise.race(this.inflight);
      if (this.failure) throw this.failure;
      await raceAbort(this.ctx.channel.writable(), this.signal);
      const position = this.position;
      this.position += data.length;
      const handle = this.handle;
      if (handle === null) throw new Error(`the remote file ${this.tempPath} is not open`);
      const p = this.ctx.call('WriteFile', { handle, position, data }, { path: this.tempPath }).then(
        () => {
          this.bytesWritten += data.length;
        },
        (err: Error) => {
          this.failure ??= err;
        },
      );
      this.inflight.add(p);
      void p.then(() => this.inflight.delete(p));
    }
    if (this.failure) throw this.failure;
  }

  /** Removes `n` bytes from the front of the buffer (no copy when one chunk covers them). */
  private take(n: number): Buffer {
    const first = this.buffered[0]!;
    if (first.length >= n) {
      if (first.length === n) this.buffered.shift();
      else this.buffered[0] = first.subarray(n);
      this.bufferedBytes -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const b = this.buffered[0]!;
      const k = Math.min(b.length, n - off);
      b.copy(out, off, 0, k);
      off += k;
      if (k === b.length) this.buffered.shift();
      else this.buffered[0] = b.subarray(k);
    }
    this.bufferedBytes -= n;
    return out;
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.committed) {
      callback(error);
      return;
    }
    const handle = this.handle;
    this.handle = null;
    this.buffered.length = 0;
    this.bufferedBytes = 0;
    void (async () => {
      await Promise.all(this.inflight);
      if (handle !== null) await this.ctx.call('CloseFile', { handle }).catch(noop);
      if (this.opened) await this.ctx.call('DeleteFile', { path: this.tempPath }).catch(noop);
    })().then(() => callback(error));
  }
}
