/**
 * Fast incremental deploys (docs/SDK.md, "Sync and deploys"):
 *
 * - {@link syncTree} (agent.sync): asks the agent for a manifest of the
 *   remote tree (the built-in job `outpost.manifest`, one request whose
 *   NDJSON streams back as JobData events), compares it with the local walk
 *   — size and last-write time (to the millisecond), or SHA-256 with
 *   `compare: 'hash'` (hashed on the agent) — and sends only what differs as
 *   one tar stream into a temp file beside the target, which `outpost.extract`
 *   unpacks (each file atomic; a new target appears whole). An unchanged tree
 *   costs one local walk and one request.
 * - {@link uploadTreeArchive} (`outpost put` of a directory): the whole tree
 *   as one archive stream, extracted on the agent.
 *
 * Against an agent without these jobs (another implementation of the
 * contract answers `Unsupported`) both fall back to the contract's own
 * commands: ListDirectory, WriteAllBytes/WriteFile, GetFileHash (transfer.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { ticksToDate } from '../protocol/index.js';
import type { ClientContext } from './context.js';
import { entryType } from './entries.js';
import { isRemoteError, OutpostError, RemoteError } from './errors.js';
import { runJob } from './jobs.js';
import { forEachLimited } from './limit.js';
import { RemoteWriteStream } from './streams.js';
import { packTree, type TarChunk } from './tar-pack.js';
import {
  type LocalFile,
  type LocalTree,
  listRemoteTree,
  type SyncOptions,
  type SyncResult,
  sync as syncByFiles,
  type TransferProgress,
  type TransferResult,
  upload,
  walkLocal,
} from './transfer.js';

/** Options of {@link AgentClient.sync}. */
export interface DeploySyncOptions extends SyncOptions {
  /** Work out what would be sent and deleted, and change nothing (default false). */
  dryRun?: boolean;
}

/** What {@link AgentClient.sync} did (or, with `dryRun`, would do). */
export interface DeploySyncResult extends SyncResult {
  /** Nothing was changed: the lists say what would have been. */
  dryRun: boolean;
  /** `archive`: manifest + one archive stream (Outpost jobs); `files`: the contract's own commands. */
  method: 'archive' | 'files';
}

interface RemoteItem {
  type: 'file' | 'dir' | 'other';
  size: number;
  mtimeMs: number;
  sha256?: string;
  fullPath?: string;
}

/**
 * Parses outpost.manifest's lines as they stream: the tab-separated form
 * it is asked for, or NDJSON from an agent that does not know that form
 * (it ignores the unknown `format` field).
 */
class ManifestReader {
  readonly items = new Map<string, RemoteItem>();
  private rest = '';
  push(chunk: Buffer): void {
    const text = this.rest + chunk.toString('utf8');
    let at = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', at)) {
      this.line(text, at, nl);
      at = nl + 1;
    }
    this.rest = text.slice(at);
  }
  end(): void {
    if (this.rest) this.line(this.rest, 0, this.rest.length);
    this.rest = '';
  }
  private line(text: string, start: number, end: number): void {
    if (end === start) return;
    if (text.charCodeAt(start) === 0x7b /* { */) {
      this.json(text.slice(start, end));
      return;
    }
    const t1 = text.indexOf('\t', start);
    const t2 = text.indexOf('\t', t1 + 1);
    const t3 = text.indexOf('\t', t2 + 1);
    const t4 = text.indexOf('\t', t3 + 1);
    const t5 = text.indexOf('\t', t4 + 1);
    if (t1 < 0 || t5 < 0 || t5 >= end)
      throw new OutpostError('PROTOCOL', 'outpost.manifest sent a line that is not a manifest entry');
    const raw = text.slice(t5 + 1, end);
    const path = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    const sha256 = t5 > t4 + 1 ? text.slice(t4 + 1, t5) : undefined;
    const item: RemoteItem = {
      type: text.charCodeAt(start) === 0x64 /* d */ ? 'dir' : 'file',
      size: Number(text.slice(t1 + 1, t2)),
      mtimeMs: Number(text.slice(t3 + 1, t4)),
    };
    if (sha256) item.sha256 = sha256;
    this.items.set(path, item);
  }
  private json(line: string): void {
    const e = JSON.parse(line) as {
      path: string;
      type: 'file' | 'dir';
      size: number;
      mtimeMs: number;
      sha256?: string;
    };
    this.items.set(e.path, {
      type: e.type,
      size: e.size,
      mtimeMs: e.mtimeMs,
      ...(e.sha256 ? { sha256: e.sha256 } : {}),
    });
  }
}

/**
 * The remote tree by relative name, through outpost.manifest; null when it
 * does not exist; throws `Unsupported` when the agent lacks the job.
 */
async function remoteManifest(
  ctx: ClientContext,
  remote: string,
  hash: boolean,
  signal: AbortSignal | undefined,
): Promise<Map<string, RemoteItem> | null> {
  if (extractSupport.get(ctx) === false) throw noJobs('outpost.manifest');
  const reader = new ManifestReader();
  const run = runJob(
    ctx,
    'outpost.manifest',
    Buffer.from(JSON.stringify({ path: remote, hash, format: 'tsv' })),
    {
      ...(signal ? { signal } : {}),
      onData: (c) => reader.push(c),
    },
  );
  try {
    await run.result;
  } catch (err) {
    if (isRemoteError(err, 'Unsupported')) extractSupport.set(ctx, false);
    if (isRemoteError(err, 'NotFound')) return null;
    throw err;
  }
  extractSupport.set(ctx, true);
  reader.end();
  return reader.items;
}

/** The same map through ListDirectory (the contract's way), null when absent. */
async function remoteListing(
  ctx: ClientContext,
  remote: string,
  signal: AbortSignal | undefined,
): Promise<Map<string, RemoteItem> | null> {
  const exists = (await ctx.call('DirectoryExists', { path: remote }, { path: remote, signal })).exists;
  if (!exists) return null;
  const entries = await listRemoteTree(ctx, remote, signal);
  const out = new Map<string, RemoteItem>();
  for (const e of entries) {
    const t = entryType(e);
    out.set(e.rel, {
      type: t === 'directory' ? 'dir' : t === 'file' ? 'file' : 'other',
      size: Number(e.size),
      mtimeMs: ticksToDate(e.lastWriteUtc).getTime(),
      fullPath: e.fullPath,
    });
  }
  return out;
}

function sha256File(abs: string): Promise<string> {
  const h = createHash('sha256');
  return pipeline(createReadStream(abs), async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) h.update(c);
  }).then(() => h.digest('hex'));
}

interface Plan {
  send: LocalFile[];
  dirs: string[];
  /** Remote entries in the way of a local one of the other kind: removed before sending. */
  replace: string[];
  stale: string[];
  unchanged: number;
}

async function plan(
  tree: LocalTree,
  remote: Map<string, RemoteItem> | null,
  options: DeploySyncOptions,
): Promise<Plan> {
  const compare = options.compare ?? 'mtime';
  const p: Plan = { send: [], dirs: [], replace: [], stale: [], unchanged: 0 };
  const r = remote ?? new Map<string, RemoteItem>();
  for (const d of tree.dirs) {
    const e = r.get(d);
    if (e?.type === 'dir') continue;
    if (e) p.replace.push(d);
    p.dirs.push(d);
  }
  const sameSize: LocalFile[] = [];
  for (const f of tree.files) {
    const e = r.get(f.rel);
    if (e?.type !== 'file') {
      if (e) p.replace.push(f.rel);
      p.send.push(f);
    } else if (e.size !== f.size) p.send.push(f);
    else sameSize.push(f);
  }
  if (compare === 'hash') {
    await forEachLimited(sameSize, 8, async (f) => {
      const theirs = r.get(f.rel)!.sha256;
      if (theirs && theirs === (await sha256File(f.abs))) p.unchanged++;
      else p.send.push(f);
    });
  } else {
    for (const f of sameSize) {
      if (r.get(f.rel)!.mtimeMs === Math.round(f.mtimeMs)) p.unchanged++;
      else p.send.push(f);
    }
  }
  p.send.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  if (options.delete && remote) {
    const local = new Set<string>([...tree.dirs, ...tree.files.map((f) => f.rel)]);
    // What a replaced directory holds goes with it.
    const staleDirs: string[] = p.replace.filter((n) => r.get(n)?.type === 'dir');
    for (const [rel, e] of r) {
      if (local.has(rel)) continue;
      if (staleDirs.some((d) => rel.startsWith(`${d}/`))) continue;
      if (e.type === 'dir') staleDirs.push(rel);
      p.stale.push(rel);
    }
    // A file listed before its directory was known to be stale: drop what a stale directory covers.
    p.stale = p.stale.filter((s) => !staleDirs.some((d) => s.startsWith(`${d}/`))).sort();
  }
  return p;
}

/** Removes remote entries (files in batches, directories recursively). */
async function removeRemote(
  ctx: ClientContext,
  remote: string,
  names: readonly string[],
  kinds: Map<string, RemoteItem>,
  signal: AbortSignal | undefined,
): Promise<void> {
  const full = (rel: string) => kinds.get(rel)?.fullPath ?? ctx.paths.join(remote, rel);
  const files = names.filter((n) => kinds.get(n)?.type !== 'dir');
  const dirs = names.filter((n) => kinds.get(n)?.type === 'dir');
  await ctx.deleteFiles(files.map(full), signal);
  await forEachLimited(
    dirs,
    8,
    async (d) => {
      const path = full(d);
      await ctx.call('DeleteDirectory', { path, recursive: true }, { path, signal });
    },
    signal,
  );
}

/** Archive bytes per part when upload and extraction overlap (a part ends at an entry's end). */
const PART_BYTES = 1024 * 1024;

type SendOptions = {
  signal?: AbortSignal | undefined;
  onProgress?: ((p: TransferProgress) => void) | undefined;
};

/**
 * Sends `dirs` and `files` of `local` as one ustar archive (tar-pack.ts)
 * and extracts it into `remote` with outpost.extract. To an agent that
 * takes parts, the archive goes as parts of about {@link PART_BYTES}
 * (`<base>.0`, `<base>.1`, …, each written to a temp name and renamed when
 * whole) while the job, started first, extracts each as it lands: upload
 * and extraction overlap, as `tar c | ssh tar x` does. To an older Outpost
 * agent it goes as one temp file, extracted once uploaded. Throws
 * `Unsupported` when the agent lacks the job.
 */
async function sendArchive(
  ctx: ClientContext,
  local: string,
  remote: string,
  dirs: readonly string[],
  files: readonly LocalFile[],
  options: SendOptions,
): Promise<number> {
  const parts = await requireExtract(ctx, options.signal);
  const parent = ctx.paths.dirname(remote);
  const base = ctx.paths.join(
    parent,
    `.${ctx.paths.basename(remote).slice(0, 64)}.${process.pid}-${Date.now()}.outpost-sync.tar`,
  );
  await ctx.call('CreateDirectory', { path: parent }, { path: parent, signal: options.signal });
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  let bytes = 0;
  const progress = (chunk: Buffer) => {
    bytes += chunk.length;
    options.onProgress?.({
      file: '',
      bytes: Math.min(bytes, totalBytes),
      totalBytes,
      files: 0,
      totalFiles: files.length,
    });
  };
  // Exact last-write times (tar keeps whole seconds), so the next sync compares to the millisecond.
  const times = Object.fromEntries(files.map((f) => [f.rel, Math.round(f.mtimeMs)]));
  const pack = packTree(local, dirs, files, options.signal);
  const writeOptions = options.signal ? { signal: options.signal } : {};
  if (parts) await sendParts(ctx, base, remote, pack, times, writeOptions, progress);
  else {
    await pipeline(
      pack,
      async function* (source: AsyncIterable<TarChunk>) {
        for await (const c of source) {
          progress(c.data);
          yield c.data;
        }
      },
      new RemoteWriteStream(ctx, base, writeOptions),
    );
    const payload = { archive: base, target: remote, removeArchive: true, times };
    try {
      await runJob(ctx, 'outpost.extract', Buffer.from(JSON.stringify(payload)), writeOptions).result;
    } catch (err) {
      await ctx.call('DeleteFile', { path: base }).catch(() => {});
      throw err;
    }
  }
  options.onProgress?.({
    file: '',
    bytes: totalBytes,
    totalBytes,
    files: files.length,
    totalFiles: files.length,
  });
  return totalBytes;
}

/** The archive as parts while outpost.extract {parts} extracts them (see sendArchive). */
async function sendParts(
  ctx: ClientContext,
  base: string,
  remote: string,
  pack: AsyncGenerator<TarChunk>,
  times: Record<string, number>,
  writeOptions: { signal?: AbortSignal },
  progress: (chunk: Buffer) => void,
): Promise<void> {
  const payload = { parts: base, target: remote, times };
  const run = runJob(ctx, 'outpost.extract', Buffer.from(JSON.stringify(payload)), writeOptions);
  let failed: unknown = null;
  const done = run.result.then(
    () => {},
    (err: unknown) => {
      failed ??= err;
    },
  );
  let next: IteratorResult<TarChunk> = { done: false, value: { data: Buffer.alloc(0), whole: true } };
  let sent = 0;
  try {
    next = await pack.next();
    while (!next.done) {
      // One part: whole entries up to about PART_BYTES; the job's failure stops the upload.
      const part = async function* () {
        let n = 0;
        while (!next.done) {
          if (failed) throw failed;
          const c: TarChunk = next.value;
          progress(c.data);
          n += c.data.length;
          if (c.data.length > 0) yield c.data;
          next = await pack.next();
          if (c.whole && n >= PART_BYTES) return;
        }
      };
      await pipeline(part, new RemoteWriteStream(ctx, `${base}.${sent}`, writeOptions));
      sent++;
    }
  } catch (err) {
    failed ??= err;
    run.cancel();
    await pack.return(undefined).catch(() => {});
  }
  await done;
  if (failed) {
    // The job deletes the parts it read; what it had not reached yet goes here.
    for (let i = 0; i < sent; i++) await ctx.call('DeleteFile', { path: `${base}.${i}` }).catch(() => {});
    throw failed;
  }
}

/** Whether the agent has the built-in jobs, by agent context (learned once). */
const extractSupport = new WeakMap<ClientContext, boolean>();
/** Whether its outpost.extract takes an archive in parts (learned by the same probe). */
const partsSupport = new WeakMap<ClientContext, boolean>();

function noJobs(type: string): RemoteError {
  return new RemoteError('Unsupported', `the agent has no ${type} job`, 'ExecuteJob');
}

/**
 * Throws `Unsupported` before anything is uploaded when the agent lacks
 * outpost.extract: an empty payload is InvalidArgument from an Outpost
 * agent, Unsupported from another implementation of the contract. Resolves
 * whether the job takes parts: the message of an agent that does names them.
 */
async function requireExtract(ctx: ClientContext, signal: AbortSignal | undefined): Promise<boolean> {
  let parts = partsSupport.get(ctx);
  if (parts === undefined && extractSupport.get(ctx) !== false) {
    let known: boolean;
    try {
      await runJob(ctx, 'outpost.extract', Buffer.from('{}'), signal ? { signal } : {}).result;
      known = true;
      parts = false;
    } catch (err) {
      if (isRemoteError(err, 'Unsupported')) known = false;
      else if (isRemoteError(err, 'InvalidArgument')) {
        known = true;
        parts = /\bparts\b/.test((err as Error).message);
      } else throw err;
    }
    extractSupport.set(ctx, known);
    if (parts !== undefined) partsSupport.set(ctx, parts);
  }
  if (extractSupport.get(ctx) === false) throw noJobs('outpost.extract');
  return parts === true;
}

/** agent.sync(): see the file header. */
export async function syncTree(
  ctx: ClientContext,
  local: string,
  remote: string,
  options: DeploySyncOptions = {},
): Promise<DeploySyncResult> {
  const { signal } = options;
  const st = await fsp.stat(local);
  if (!st.isDirectory())
    throw new OutpostError('NotDirectory', `sync needs a local directory; ${local} is not one`, {
      path: local,
    });
  // The manifest request goes out first: the agent walks its tree while this one is walked.
  const asked = remoteManifest(ctx, remote, options.compare === 'hash', signal).catch((err: unknown) => {
    if (isRemoteError(err, 'Unsupported')) return 'unsupported' as const;
    throw err;
  });
  const [manifest, tree] = await Promise.all([asked, walkLocal(local, signal)]);
  if (manifest === 'unsupported') {
    if (!options.dryRun)
      return { ...(await syncByFiles(ctx, local, remote, options)), dryRun: false, method: 'files' };
    const listed = await remoteListing(ctx, remote, signal);
    const p = await plan(tree, listed, { ...options, compare: 'mtime' });
    return result(p, true, 'files', 0);
  }
  const p = await plan(tree, manifest, options);
  if (options.dryRun) return result(p, true, 'archive', 0);
  const known = manifest ?? new Map<string, RemoteItem>();
  if (p.stale.length > 0) await removeRemote(ctx, remote, p.stale, known, signal);
  if (p.replace.length > 0) await removeRemote(ctx, remote, p.replace, known, signal);
  let bytes = 0;
  if (p.send.length > 0 || p.dirs.length > 0 || manifest === null)
    bytes = await sendArchive(ctx, local, remote, p.dirs, p.send, options);
  return result(p, false, 'archive', bytes);
}

function result(
  p: Plan,
  dryRun: boolean,
  method: DeploySyncResult['method'],
  bytes: number,
): DeploySyncResult {
  return {
    uploaded: p.send.map((f) => f.rel),
    deleted: p.stale,
    unchanged: p.unchanged,
    bytes: dryRun ? p.send.reduce((n, f) => n + f.size, 0) : bytes,
    dryRun,
    method,
  };
}

/**
 * Uploads a local directory tree to `remote` as one archive stream,
 * extracted on the agent (into a new directory whole, into an existing one
 * file by file, each atomic). Falls back to {@link upload} (a request per
 * file, SHA-256 verified) when the agent lacks outpost.extract.
 */
export async function uploadTreeArchive(
  ctx: ClientContext,
  local: string,
  remote: string,
  options: SyncOptions = {},
): Promise<TransferResult & { method: 'archive' | 'files' }> {
  const tree = await walkLocal(local, options.signal);
  try {
    const bytes = await sendArchive(ctx, local, remote, tree.dirs, tree.files, options);
    return {
      files: tree.files.length,
      bytes,
      directories: tree.dirs.length,
      skipped: tree.skipped,
      method: 'archive',
    };
  } catch (err) {
    if (!isRemoteError(err, 'Unsupported')) throw err;
  }
  return { ...(await upload(ctx, local, remote, options)), method: 'files' };
}
