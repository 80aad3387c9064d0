/**
 * Packs part of a local tree as one ustar stream (src/protocol/ustar.ts)
 * for deploys: `put` of a directory and `sync` send it, and the agent's
 * `outpost.extract` unpacks it with its fast reader. Small files are read
 * with synchronous calls straight into a batch buffer behind their header
 * (open, fstat, read, close: a few microseconds each from the page cache,
 * where node-tar spends a stream, several promises and its own header
 * object per file), and the batch goes out as one chunk of about 256 KiB;
 * larger files stream (exactly the size the walk saw; a file that
 * changed meanwhile fails the send with `CHANGED`). The output is a valid tar (`tar tf` lists it).
 */
import { closeSync, createReadStream, constants as fsc, lstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { encodeEntry, entryHeaderBytes, TAR_END, tarPadding } from '../protocol/index.js';
import { abortReason, OutpostError } from './errors.js';
import type { LocalFile } from './transfer.js';

/** Bytes per chunk handed to the write stream. */
const BATCH = 256 * 1024;
/** Files up to this size go into a batch whole; larger ones stream. */
const SMALL_MAX = BATCH / 2;

function changed(rel: string, why: string): OutpostError {
  return new OutpostError('CHANGED', `${rel} ${why} while it was being sent: run the sync again`, {
    path: rel,
  });
}

/** A piece of the archive; `whole`: an entry ends with it (the archive may be cut there). */
export interface TarChunk {
  readonly data: Buffer;
  readonly whole: boolean;
}

/**
 * The archive's bytes: `dirs` (relative names) as directory entries, then
 * `files`, then the end blocks. A file's last-write time is the walk's
 * (`mtimeMs`), its size and mode what fstat says when it is read.
 */
export async function* packTree(
  local: string,
  dirs: readonly string[],
  files: readonly LocalFile[],
  signal?: AbortSignal,
): AsyncGenerator<TarChunk> {
  let buf = Buffer.allocUnsafe(BATCH);
  let at = 0;
  const room = (n: number) => at + n <= BATCH;
  for (const d of dirs) {
    let mode = 0o755;
    let mtimeMs = Date.now();
    try {
      const st = lstatSync(path.join(local, d));
      mode = st.mode & 0o7777;
      mtimeMs = st.mtimeMs;
    } catch {
      // gone meanwhile: the directory is still made on the agent
    }
    const entry = { name: `${d}/`, type: 'dir', size: 0, mode, mtimeMs } as const;
    if (!room(entryHeaderBytes(entry))) {
      yield { data: buf.subarray(0, at), whole: true };
      buf = Buffer.allocUnsafe(BATCH);
      at = 0;
    }
    at += encodeEntry(buf, at, entry);
  }
  for (const f of files) {
    if (signal?.aborted) throw abortReason(signal);
    // Size and mode are the walk's (no second stat: Node 20's Stats makes four Dates);
    // a file that changed since is caught by reading exactly that many bytes and one more.
    const entry = { name: f.rel, type: 'file', size: f.size, mode: f.mode, mtimeMs: f.mtimeMs } as const;
    const header = entryHeaderBytes(entry);
    if (f.size > SMALL_MAX) {
      yield* packLarge(f, entry, header, buf.subarray(0, at));
      buf = Buffer.allocUnsafe(BATCH);
      at = 0;
      continue;
    }
    const need = header + f.size + tarPadding(f.size);
    if (!room(need + 1)) {
      yield { data: buf.subarray(0, at), whole: true };
      buf = Buffer.allocUnsafe(BATCH);
      at = 0;
    }
    // O_NONBLOCK: a file swapped for a FIFO cannot block the read.
    const fd = openSync(f.abs, fsc.O_RDONLY | (fsc.O_NONBLOCK ?? 0));
    try {
      const dataAt = at + encodeEntry(buf, at, entry);
      let got = 0;
      for (;;) {
        // Asks for one byte more than the size: getting it means the file grew.
        const n = readSync(fd, buf, dataAt + got, f.size + 1 - got, got);
        if (n === 0) break;
        got += n;
        if (got > f.size) throw changed(f.rel, 'grew');
      }
      if (got < f.size) throw changed(f.rel, 'shrank');
      buf.fill(0, dataAt + got, at + need);
      at += need;
    } finally {
      closeSync(fd);
    }
  }
  if (!room(TAR_END.length)) {
    yield { data: buf.subarray(0, at), whole: true };
    buf = Buffer.allocUnsafe(BATCH);
    at = 0;
  }
  buf.set(TAR_END, at);
  at += TAR_END.length;
  yield { data: buf.subarray(0, at), whole: true };
}

/** The pending batch, then a large file's header, its bytes (streamed, exactly its size) and padding. */
async function* packLarge(
  f: LocalFile,
  entry: Parameters<typeof encodeEntry>[2],
  headerBytes: number,
  pending: Buffer,
): AsyncGenerator<TarChunk> {
  if (pending.length > 0) yield { data: pending, whole: true };
  const header = Buffer.alloc(headerBytes);
  encodeEntry(header, 0, entry);
  yield { data: header, whole: false };
  let sent = 0;
  if (entry.size > 0)
    for await (const chunk of createReadStream(f.abs, {
      start: 0,
      end: entry.size - 1,
    }) as AsyncIterable<Buffer>) {
      sent += chunk.length;
      yield { data: chunk, whole: false };
    }
  if (sent !== entry.size) throw changed(f.rel, 'shrank');
  const pad = tarPadding(entry.size);
  yield { data: Buffer.alloc(pad), whole: true };
}
