/**
 * The built-in job types (docs/EXTENSIONS.md, "Built-in jobs"): payloads and
 * results are UTF-8 JSON objects.
 *
 * - `outpost.manifest` {path, hash = true, format = "ndjson"} → streams
 *   NDJSON lines, one per entry below `path` ({path, type: "file"|"dir",
 *   size, mode, mtimeMs, sha256?}), or with format "tsv" the same as
 *   tab-separated lines (`f|d size mode mtimeMs sha256 path`, a third of the
 *   bytes and no JSON per entry: what sync asks for), as JobData events (5)
 *   in chunks of at most 64 KiB; the result
 *   is {files, directories, bytes}. Symbolic links and special files are
 *   left out. Files are hashed with several reads in flight (the thread pool
 *   reads them in parallel). `path` missing: NotFound.
 * - `outpost.extract` {archive, target, format?, removeArchive = false,
 *   times?: {entry name: ms since the epoch}} →
 *   {files, directories, bytes}: see src/host/archive.ts for where files land
 *   and what is refused. With {parts: base} instead of archive, the archive
 *   arrives as `<base>.0`, `<base>.1`, … while it is extracted (what the SDK
 *   sends: upload and extraction overlap).
 * - `outpost.archive` {path, output, format = "tar"} → {entries}.
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  ARCHIVE_FORMATS,
  type ArchiveFormat,
  createArchive,
  extractArchive,
  extractArchiveParts,
} from './archive.js';
import { pathError } from './fs-errors.js';
import {
  type BUILTIN_JOB_TYPES,
  type JobContext,
  type JobFunction,
  jsonPayload,
  optionalBool,
  stringField,
} from './job-api.js';
import { HostError } from './types.js';

/** Most bytes of NDJSON per JobData event. */
const DATA_CHUNK = 64 * 1024;
/** Files hashed at once. */
const HASH_WINDOW = 8;
/** Entries stat'ed between yields to the event loop. */
const YIELD_EVERY = 512;

function formatField(o: Record<string, unknown>, type: string, dflt: ArchiveFormat | undefined) {
  const v = o.format;
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !(ARCHIVE_FORMATS as readonly string[]).includes(v))
    throw new HostError('InvalidArgument', `${type}: format must be one of ${ARCHIVE_FORMATS.join(', ')}`);
  return v as ArchiveFormat;
}

function sha256(file: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = createReadStream(file, { signal, highWaterMark: 256 * 1024 });
    s.on('data', (c) => h.update(c as Buffer));
    s.on('error', reject);
    s.on('end', () => resolve(h.digest('hex')));
  });
}

interface ManifestLine {
  path: string;
  type: 'file' | 'dir';
  size: number;
  mode: number;
  mtimeMs: number;
  sha256?: string;
}

const manifest: JobFunction = async (job: JobContext) => {
  const p = jsonPayload(job.payload, job.type);
  const root = job.resolve(stringField(p, 'path', job.type));
  const hash = optionalBool(p, 'hash', job.type, true);
  const tsv = manifestFormat(p, job.type) === 'tsv';
  const st = lstatSyncOrNull(root);
  if (!st) throw pathError('NotFound', root, 'the directory to describe does not exist');
  if (!st.isDirectory()) throw pathError('NotDirectory', root, 'a manifest is made of a directory');
  let pendingText = '';
  const flush = async (force: boolean) => {
    if (pendingText.length === 0 || (!force && pendingText.length < DATA_CHUNK)) return;
    const chunk = Buffer.from(pendingText, 'utf8');
    pendingText = '';
    await job.write(chunk);
  };
  // No promise per line: only a full chunk waits for the link.
  const emit = (line: ManifestLine): Promise<void> | undefined => {
    pendingText += tsv ? tsvLine(line) : `${JSON.stringify(line)}\n`;
    return pendingText.length >= DATA_CHUNK ? flush(true) : undefined;
  };
  const totals = { files: 0, directories: 0, bytes: 0 };
  const hashing: { line: ManifestLine; abs: string }[] = [];
  const drainHashes = async () => {
    const batch = hashing.splice(0);
    let i = 0;
    const worker = async () => {
      for (let n = i++; n < batch.length; n = i++) {
        const b = batch[n]!;
        b.line.sha256 = await sha256(b.abs, job.signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(HASH_WINDOW, batch.length) }, worker));
    for (const b of batch) await emit(b.line);
  };
  let seen = 0;
  // Synchronous readdir and lstat (a few microseconds each, where a thread-pool
  // round trip costs more), yielding every YIELD_EVERY entries; the entry's
  // type comes with readdir, so links and special files cost no lstat.
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = readdirSync(abs, { withFileTypes: true });
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const subdirs: [string, string][] = [];
    for (const d of names) {
      if (++seen % YIELD_EVERY === 0) {
        job.signal.throwIfAborted();
        await new Promise<void>((r) => setImmediate(r));
      }
      if (!d.isDirectory() && !d.isFile()) continue;
      const childAbs = `${abs}${path.sep}${d.name}`;
      const childRel = rel ? `${rel}/${d.name}` : d.name;
      const cst = lstatSyncOrNull(childAbs);
      if (!cst) continue; // gone meanwhile
      const line: ManifestLine = {
        path: childRel,
        type: cst.isDirectory() ? 'dir' : 'file',
        size: cst.isDirectory() ? 0 : cst.size,
        mode: cst.mode & 0o7777,
        mtimeMs: Math.round(cst.mtimeMs),
      };
      if (cst.isDirectory()) {
        totals.directories++;
        const full = emit(line);
        if (full) await full;
        subdirs.push([childAbs, childRel]);
      } else if (cst.isFile()) {
        totals.files++;
        totals.bytes += cst.size;
        if (hash) {
          hashing.push({ line, abs: childAbs });
          if (hashing.length >= HASH_WINDOW * 8) await drainHashes();
        } else {
          const full = emit(line);
          if (full) await full;
        }
      }
    }
    for (const [a, r] of subdirs) await walk(a, r);
  };
  await walk(root, '');
  await drainHashes();
  await flush(true);
  return totals;
};

function manifestFormat(o: Record<string, unknown>, type: string): 'ndjson' | 'tsv' {
  const v = o.format ?? 'ndjson';
  if (v !== 'ndjson' && v !== 'tsv')
    throw new HostError('InvalidArgument', `${type}: format must be ndjson or tsv`);
  return v;
}

/**
 * One tab-separated manifest line: `f|d size mode mtimeMs sha256 path`. The
 * path comes last and is written as is unless it holds a newline or a
 * backslash or starts with `"`: then it is a JSON string.
 */
function tsvLine(l: ManifestLine): string {
  const name = /[\n\\]/.test(l.path) || l.path.startsWith('"') ? JSON.stringify(l.path) : l.path;
  return `${l.type === 'dir' ? 'd' : 'f'}\t${l.size}\t${l.mode}\t${l.mtimeMs}\t${l.sha256 ?? ''}\t${name}\n`;
}

function lstatSyncOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/** `times`: {name: ms since the epoch}, exact last-write times for the entries. */
function timesField(o: Record<string, unknown>, type: string): Map<string, number> | undefined {
  const v = o.times;
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HostError(
      'InvalidArgument',
      `${type}: times must be an object of entry name → ms since the epoch`,
    );
  const out = new Map<string, number>();
  for (const [k, t] of Object.entries(v)) {
    if (typeof t !== 'number' || !Number.isFinite(t))
      throw new HostError('InvalidArgument', `${type}: times[${JSON.stringify(k)}] must be a number`);
    out.set(k, t);
  }
  return out;
}

const extract: JobFunction = async (job: JobContext) => {
  const p = jsonPayload(job.payload, job.type);
  // Checked first: the SDK's probe ({}) learns from this message that parts are understood.
  if (p.archive === undefined && p.parts === undefined)
    throw new HostError('InvalidArgument', `${job.type}: archive or parts (a path) must be given`);
  const target = job.resolve(stringField(p, 'target', job.type));
  const times = timesField(p, job.type);
  const limits = { maxBytes: job.limits.maxExtractedBytes, signal: job.signal, times };
  if (p.parts !== undefined) {
    // An archive that arrives in parts while it is extracted (archive.ts, extractArchiveParts).
    const base = job.resolve(stringField(p, 'parts', job.type));
    const result = await extractArchiveParts(base, target, limits);
    job.log.info(`extracted ${result.files} files (${result.bytes} bytes) into ${target}`);
    return result;
  }
  const archive = job.resolve(stringField(p, 'archive', job.type));
  const format = formatField(p, job.type, undefined);
  const removeArchive = optionalBool(p, 'removeArchive', job.type, false);
  const ast = lstatSyncOrNull(archive);
  if (!ast?.isFile()) throw pathError('NotFound', archive, 'the archive to extract does not exist');
  try {
    const result = await extractArchive(archive, target, { ...limits, format });
    job.log.info(`extracted ${result.files} files (${result.bytes} bytes) into ${target}`);
    return result;
  } finally {
    if (removeArchive) await rm(archive, { force: true }).catch(() => {});
  }
};

const archive: JobFunction = async (job: JobContext) => {
  const p = jsonPayload(job.payload, job.type);
  const dir = job.resolve(stringField(p, 'path', job.type));
  const output = job.resolve(stringField(p, 'output', job.type));
  const format = formatField(p, job.type, 'tar') ?? 'tar';
  const entries = await createArchive(dir, output, { format, signal: job.signal });
  job.log.info(`archived ${entries} entries of ${dir} into ${output}`);
  return { entries };
};

/** The built-in job types by name (their names, spelled once: BUILTIN_JOB_TYPES in job-api.ts). */
const TABLE: Readonly<Record<(typeof BUILTIN_JOB_TYPES)[number], JobFunction>> = {
  'outpost.manifest': manifest,
  'outpost.extract': extract,
  'outpost.archive': archive,
};
export const BUILTIN_JOBS: Readonly<Record<string, JobFunction | undefined>> = TABLE;
