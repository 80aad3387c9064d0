/**
 * The fast path of tar extraction: reads a plain ustar archive (what the
 * SDK's deploys pack, src/protocol/ustar.ts) with synchronous reads of
 * 1 MiB at a time and hands each entry to a visitor — no stream, promise or
 * event per entry, which is what node-tar costs on thousands of small
 * files. The visitor (src/host/archive.ts) owns every safety rule.
 *
 * What it does not know (links, devices, GNU long names, sparse files,
 * unknown pax keys, a bad checksum) throws {@link NotUstar} before that
 * entry is touched; the caller then extracts the archive with node-tar
 * from the start, which refuses or accepts it by the usual rules. A
 * truncated archive is `InvalidArgument`.
 *
 * Builtin jobs run on the host's main thread: the reader yields to the
 * event loop every {@link YIELD_EVERY} entries, so the session's other
 * requests and a Cancel are served meanwhile.
 */
import { closeSync, createReadStream, fstatSync, openSync, readSync } from 'node:fs';
import { decodeHeader, decodePax, TAR_BLOCK, tarPadding } from '../protocol/ustar.js';
import { HostError } from './types.js';

/** The archive is not one the fast path reads; `why` says what it met. */
export class NotUstar extends Error {
  constructor(readonly why: string) {
    super(`not a plain ustar archive (${why})`);
  }
}

export interface UstarEntry {
  readonly name: string;
  readonly size: number;
  readonly mode: number;
  /** Last-write time from the archive (pax mtime when present), ms since the epoch. */
  readonly mtimeMs: number;
}

export interface UstarVisitor {
  /** A directory entry. */
  dir(entry: UstarEntry): void;
  /** Called for every file before its data is read: throws to refuse it (name, size limit). */
  accept(entry: UstarEntry): void;
  /** A file of at most `smallMax` bytes, whole (the buffer is reused after the call returns). */
  small(entry: UstarEntry, data: Buffer): void;
  /** A larger file, as a stream of exactly its bytes. */
  large(entry: UstarEntry, data: NodeJS.ReadableStream): Promise<void>;
}

/** Bytes read from the archive at a time. */
const READ_SIZE = 1024 * 1024;
/** Entries handled between yields to the event loop. */
const YIELD_EVERY = 128;

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function truncated(): HostError {
  return new HostError('InvalidArgument', 'not a readable tar archive: it ends in the middle of an entry');
}

/** A window on the archive file: `ensure(n)` makes n bytes from `at` available in `buf`. */
class Window {
  buf: Buffer;
  at = 0;
  end = 0;
  /** File offset of buf[0]. */
  base = 0;
  private eof = false;
  constructor(
    private readonly fd: number,
    capacity: number,
  ) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** File offset of the next unread byte. */
  get position(): number {
    return this.base + this.at;
  }

  ensure(n: number): boolean {
    if (this.end - this.at >= n) return true;
    if (n > this.buf.length) {
      const bigger = Buffer.allocUnsafe(n);
      this.buf.copy(bigger, 0, this.at, this.end);
      this.buf = bigger;
    } else this.buf.copy(this.buf, 0, this.at, this.end);
    this.base += this.at;
    this.end -= this.at;
    this.at = 0;
    while (this.end - this.at < n && !this.eof) {
      const got = readSync(this.fd, this.buf, this.end, this.buf.length - this.end, this.base + this.end);
      if (got === 0) this.eof = true;
      this.end += got;
    }
    return this.end - this.at >= n;
  }

  /** Moves past `n` bytes (which may lie beyond the window). */
  skip(n: number): void {
    const here = this.end - this.at;
    if (n <= here) {
      this.at += n;
      return;
    }
    this.base += this.end + (n - here);
    this.at = 0;
    this.end = 0;
  }
}

/**
 * Reads `file` and calls the visitor per entry. Resolves true when it met
 * the end blocks, false when the file simply stops between two entries (a
 * part of an archive, see extractArchiveParts). Throws {@link NotUstar} at
 * the first thing it does not know, `InvalidArgument` when it is truncated,
 * and whatever the visitor throws.
 */
export async function readUstar(
  file: string,
  visitor: UstarVisitor,
  options: { smallMax: number; signal?: AbortSignal | undefined },
): Promise<boolean> {
  const fd = openSync(file, 'r');
  try {
    const w = new Window(fd, Math.max(READ_SIZE, options.smallMax + 2 * TAR_BLOCK));
    let pax: Map<string, string> | null = null;
    for (let n = 1; ; n++) {
      if (n % YIELD_EVERY === 0) {
        await yieldToLoop();
        options.signal?.throwIfAborted();
      }
      if (!w.ensure(TAR_BLOCK)) {
        // No end blocks: node-tar accepts an archive that simply stops between entries.
        if (w.end === w.at && pax === null) return false;
        throw truncated();
      }
      const h = decodeHeader(w.buf, w.at);
      w.skip(TAR_BLOCK);
      if (h.kind === 'end') return true;
      if (h.kind === 'unknown') throw new NotUstar(h.why);
      if (h.kind === 'pax') {
        if (pax) throw new NotUstar('two pax headers in a row');
        if (h.size > 64 * 1024) throw new NotUstar('pax header over 64 KiB');
        if (!w.ensure(h.size)) throw truncated();
        pax = decodePax(w.buf.subarray(w.at, w.at + h.size));
        if (!pax) throw new NotUstar('pax record');
        w.skip(h.size + tarPadding(h.size));
        continue;
      }
      const entry = applyPax(h, pax);
      pax = null;
      if (h.kind === 'dir') {
        visitor.dir(entry);
        continue;
      }
      visitor.accept(entry);
      const padded = entry.size + tarPadding(entry.size);
      if (entry.size <= options.smallMax) {
        if (!w.ensure(padded)) throw truncated();
        visitor.small(entry, w.buf.subarray(w.at, w.at + entry.size));
        w.skip(padded);
      } else {
        // Checked first: a truncated file must not be committed.
        const start = w.position;
        if (start + entry.size > fstatSync(fd).size) throw truncated();
        const stream = createReadStream(file, { start, end: start + entry.size - 1 });
        await visitor.large(entry, stream);
        if (stream.bytesRead !== entry.size) throw truncated();
        w.skip(padded);
      }
    }
  } finally {
    closeSync(fd);
  }
}

function applyPax(
  h: { name: string; size: number; mode: number; mtime: number },
  pax: Map<string, string> | null,
): UstarEntry {
  if (!pax) return { name: h.name, size: h.size, mode: h.mode, mtimeMs: h.mtime * 1000 };
  const size = pax.has('size') ? Number(pax.get('size')) : h.size;
  const mtime = pax.has('mtime') ? Number(pax.get('mtime')) : h.mtime;
  if (!Number.isSafeInteger(size) || size < 0) throw new NotUstar('pax size');
  if (!Number.isFinite(mtime)) throw new NotUstar('pax mtime');
  return { name: pax.get('path') ?? h.name, size, mode: h.mode, mtimeMs: Math.round(mtime * 1000) };
}
