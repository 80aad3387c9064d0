/**
 * The output of one process (or job) that no connection takes now, kept in
 * order until one does (docs/ARCHITECTURE.md, "Detached output spool").
 *
 * A spool is a sequence of whole wire messages: first those in its file
 * (`[u32 length][message]` records, appended), then those in memory. While
 * everything fits in `memoryBytes` there is no file; past it, everything
 * goes to a file created in `dir` (0700) with mode 0600, written one batch
 * at a time. The owner bounds it (`bytes`) and pauses the host that feeds
 * it while `blocked` (a write pending, or a write failed: then the rest
 * stays in memory, bounded by that pause, and nothing is dropped).
 *
 * Delivery (`pump`) goes to `target()` whenever there is one: the file is
 * read back in order (a window of READ_CHUNK bytes, each length checked
 * before its bytes are read), each message sent with the connection's
 * backpressure (`send` false → `onceDrain`), then the memory queue. New
 * messages keep coming into the spool while it is read, so live output
 * follows the kept output in order; when nothing is left the file is
 * removed and `onEmpty` says so (the owner then sends live output
 * directly). A target that goes mid-way leaves the rest for the next one.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Pieces } from '../protocol/index.js';
import { ConfigError } from './config-xml.js';

/** Where a spool delivers (a client connection of the session). */
export interface SpoolTarget {
  readonly closed: boolean;
  send(message: Buffer | Pieces): boolean;
  onceDrain(cb: () => void): void;
}

export interface SpoolOptions {
  /** The directory of its file (created 0700 when a file is first needed). */
  dir: string;
  /** File name stem, unique in `dir` (each file of the spool adds a sequence number). */
  name: string;
  /** Bytes kept in memory before a file is used (default 1 MiB). */
  memoryBytes?: number;
  /** Longest record read back (a wire message): anything longer is a damaged file. */
  maxRecordBytes: number;
  /** Where messages go now (null, or closed: they wait). */
  target(): SpoolTarget | null;
  /** Everything appended so far has been delivered and the file is gone. */
  onEmpty(): void;
  /** `bytes` or `blocked` may have changed. */
  onChange(): void;
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

export const DEFAULT_SPOOL_MEMORY_BYTES = 1024 * 1024;
const READ_CHUNK = 256 * 1024;
const HEADER = 4;

export class Spool {
  readonly #o: SpoolOptions;
  readonly #memoryBytes: number;
  /** Messages after the file's, in order (copies). */
  #queue: Buffer[] = [];
  #queueBytes = 0;
  #fh: FileHandle | null = null;
  #path = '';
  #files = 0;
  /** File bytes written (readable) and being written. */
  #writePos = 0;
  #writingBytes = 0;
  /** File offset of the next record to deliver. */
  #readPos = 0;
  #window: Buffer | null = null;
  #windowPos = 0;
  #writing: Promise<void> | null = null;
  #failed = false;
  #pumping = false;
  /** Reading back failed (EIO, a damaged file): no more attempts, logged once; the session's end removes it. */
  #unreadable = false;
  #closed = false;
  /** Removals of delivered files still running. */
  readonly #removals = new Set<Promise<void>>();
  /** The last message appended was the final one (Exited, or a job's result). */
  final = false;

  constructor(opts: SpoolOptions) {
    this.#o = opts;
    this.#memoryBytes = opts.memoryBytes ?? DEFAULT_SPOOL_MEMORY_BYTES;
  }

  /** Bytes held: in the file (read or not: the file only shrinks when removed) and in memory. */
  get bytes(): number {
    return this.#writePos + this.#writingBytes + this.#queueBytes;
  }

  /** The feeding host must wait: a file write is pending, or writing failed. */
  get blocked(): boolean {
    return this.#writing !== null || this.#failed;
  }

  /** The current file, if any (tests, status). */
  get file(): string | null {
    return this.#fh ? this.#path : null;
  }

  /** Adds one message at the end (copied: pipe chunks are not kept alive by it), then delivers if it can. */
  append(message: Buffer | Pieces, final = false): void {
    if (this.#closed) return;
    const copy = Buffer.isBuffer(message) ? Buffer.from(message) : Buffer.concat(message as Buffer[]);
    this.#queue.push(copy);
    this.#queueBytes += copy.length;
    if (final) this.final = true;
    if (this.#fh || this.#writing || this.#queueBytes > this.#memoryBytes) this.#write();
    this.pump();
  }

  /** Starts delivering to the target, if there is one and delivery is not running already. */
  pump(): void {
    if (this.#pumping || this.#closed || this.#unreadable) return;
    const t = this.#o.target();
    if (!t || t.closed) return;
    this.#pumping = true;
    this.#run().catch((err: Error) => {
      // A read error or a damaged file: delivery stops here (the host pauses at the bound), nothing is skipped.
      this.#unreadable = true;
      this.#o.log('error', 'detached output spool: reading back failed; its output stops here', {
        file: this.#path,
        error: err.message,
      });
    });
  }

  /** Drops everything (the session ended): the file is closed and removed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queueBytes = 0;
    await this.#writing;
    this.#dropFile();
    await Promise.all(this.#removals);
  }

  async #run(): Promise<void> {
    try {
      for (;;) {
        if (this.#closed) return;
        let t = this.#o.target();
        if (!t || t.closed) return;
        if (this.#fh && this.#readPos < this.#writePos) {
          const record = await this.#record();
          t = this.#o.target();
          // Gone while reading: the record stays for the next connection.
          if (this.#closed || !t || t.closed) return;
          this.#readPos += HEADER + record.length;
          if (!t.send(record)) await drained(t);
          continue;
        }
        if (this.#writing) {
          await this.#writing;
          continue;
        }
        // The file is delivered; what follows it (if anything) is in memory.
        if (this.#fh) {
          this.#dropFile();
          this.#o.onChange();
          continue;
        }
        const next = this.#queue.shift();
        if (next) {
          this.#queueBytes -= next.length;
          if (!t.send(next)) {
            this.#o.onChange();
            await drained(t);
          }
          continue;
        }
        this.#pumping = false;
        this.#failed = false;
        this.#o.onChange();
        this.#o.onEmpty();
        return;
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** The record at readPos (its bytes, a view of the read window). */
  async #record(): Promise<Buffer> {
    const head = await this.#bytesAt(this.#readPos, HEADER);
    const length = head.readUInt32BE(0);
    if (length > this.#o.maxRecordBytes || this.#readPos + HEADER + length > this.#writePos)
      throw new Error(
        `record at ${this.#readPos} claims ${length} bytes (at most ${this.#o.maxRecordBytes}, ${this.#writePos - this.#readPos - HEADER} left): the file is damaged`,
      );
    return this.#bytesAt(this.#readPos + HEADER, length);
  }

  async #bytesAt(pos: number, n: number): Promise<Buffer> {
    const w = this.#window;
    if (w && pos >= this.#windowPos && pos + n <= this.#windowPos + w.length)
      return w.subarray(pos - this.#windowPos, pos - this.#windowPos + n);
    const fh = this.#fh;
    if (!fh) throw new Error('the spool file is gone');
    const size = Math.min(Math.max(n, READ_CHUNK), this.#writePos - pos);
    const buf = Buffer.allocUnsafe(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(buf, done, size - done, pos + done);
      if (bytesRead === 0) throw new Error(`the file ends at ${pos + done}, before ${pos + size}`);
      done += bytesRead;
    }
    this.#window = buf;
    this.#windowPos = pos;
    return buf.subarray(0, n);
  }

  #write(): void {
    if (this.#writing || this.#failed || this.#closed || this.#queue.length === 0) return;
    this.#writing = this.#writeAll().finally(() => {
      this.#writing = null;
      // Appended after the last batch was taken: the file is still where it goes.
      if (this.#fh) this.#write();
      this.#o.onChange();
    });
  }

  /** Writes the queue to the file, batch after batch, until it is empty (the host is paused meanwhile). */
  async #writeAll(): Promise<void> {
    try {
      if (!this.#fh) {
        await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
        this.#path = join(this.#o.dir, `${this.#o.name}-${this.#files++}.spool`);
        this.#fh = await open(this.#path, 'wx+', 0o600);
        this.#writePos = 0;
        this.#readPos = 0;
      }
      while (this.#queue.length > 0 && !this.#closed) {
        const batch = this.#queue.splice(0);
        const bytes = this.#queueBytes;
        this.#queueBytes = 0;
        this.#writingBytes = bytes + HEADER * batch.length;
        const iov: Buffer[] = [];
        for (const m of batch) {
          const h = Buffer.allocUnsafe(HEADER);
          h.writeUInt32BE(m.length, 0);
          iov.push(h, m);
        }
        try {
          await writeFully(this.#fh, iov, this.#writePos);
        } catch (err) {
          // Nothing of the batch counts as written (a partial record is never read: writePos stays).
          this.#queue.unshift(...batch);
          this.#queueBytes += bytes;
          throw err;
        } finally {
          this.#writingBytes = 0;
        }
        this.#writePos += bytes + HEADER * batch.length;
      }
    } catch (err) {
      if (this.#closed) return;
      // Never drop output: what is not written stays in memory and the host stays paused until delivered.
      this.#failed = true;
      this.#o.log('error', 'detached output spool: cannot write; the process stays paused until attached', {
        file: this.#path || this.#o.dir,
        error: (err as Error).message,
      });
    }
  }

  /** Forgets the (delivered) file and removes it in the background. */
  #dropFile(): void {
    const fh = this.#fh;
    const path = this.#path;
    this.#fh = null;
    this.#window = null;
    this.#writePos = 0;
    this.#readPos = 0;
    this.#failed = false;
    if (!fh) return;
    const removal = fh
      .close()
      .catch(() => {})
      .then(() => rm(path, { force: true }))
      .catch((err: Error) =>
        this.#o.log('warn', 'detached output spool: cannot remove a delivered file', {
          file: path,
          error: err.message,
        }),
      )
      .finally(() => this.#removals.delete(removal));
    this.#removals.add(removal);
  }
}

async function writeFully(fh: FileHandle, iov: Buffer[], position: number): Promise<void> {
  let bufs = iov;
  let pos = position;
  while (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, pos);
    pos += bytesWritten;
    let skip = bytesWritten;
    let i = 0;
    while (i < bufs.length && skip >= bufs[i]!.length) skip -= bufs[i++]!.length;
    bufs = bufs.slice(i);
    if (bufs.length > 0 && skip > 0) bufs[0] = bufs[0]!.subarray(skip);
  }
}

function drained(t: SpoolTarget): Promise<void> {
  return new Promise((resolve) => t.onceDrain(resolve));
}

/**
 * The spool directory of this agent run: `<parent>/run-<pid>-<random>`
 * (created on first use). Agents sharing a parent (in one process, or
 * several on one config) never touch each other's.
 */
export function spoolRunDir(parent: string): string {
  const name = `run-${process.pid}-${randomBytes(4).toString('hex')}`;
  ownRuns.add(name);
  return join(parent, name);
}

/** Run directories of agents in this process (a previous run may have had the same pid: in a container, often). */
const ownRuns = new Set<string>();

/**
 * At agent start: removes the spool directories of runs whose process is
 * gone (a previous run that crashed or was killed); returns how many. A
 * path that exists but cannot hold them stops the start (ConfigError).
 */
export function removeStaleSpools(parent: string): number {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 0; // no spool directory yet: made when first needed
    throw new ConfigError(
      'DetachedSpoolPath',
      `${parent} cannot be used for spool files (${code === 'ENOTDIR' ? 'it is not a directory' : (err as Error).message}); name a directory of the agent's own`,
    );
  }
  let removed = 0;
  for (const n of names) {
    const m = /^run-(\d+)-[0-9a-f]+$/.exec(n);
    if (!m || ownRuns.has(n) || (Number(m[1]) !== process.pid && processAlive(Number(m[1])))) continue;
    rmSync(join(parent, n), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

/** Removes this run's spool directory (agent stop). */
export async function removeSpoolDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The spool files in a directory (tests). */
export async function spoolFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => n.endsWith('.spool'));
  } catch {
    return [];
  }
}
