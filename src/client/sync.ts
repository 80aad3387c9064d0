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
import { packTree } from './tar-pack.js';
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

/** Parses outpost.manifest's NDJSON as it streams. */
class ManifestReader {
  readonly items = new Map<string, RemoteItem>();
  private rest = '';
  push(chunk: Buffer): void {
    const text = this.rest + chunk.toString('utf8');
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }
  end(): void {
    if (this.rest) this.line(this.rest);
    this.rest = '';
  }
  private line(line: string): void {
    if (line === '') return;
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
  const run = runJob(ctx, 'outpost.manifest', Buffer.from(JSON.stringify({ path: remote, hash })), {
    ...(signal ? { signal } : {}),
    onData: (c) => reader.push(c),
  });
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

/**
 * Sends `entries` of `local` (files, and directories with a trailing `/`) as
 * one tar stream to a temp file beside `remote`, and extracts it there
 * with outpost.extract. Throws `Unsupported` when the agent lacks the job.
 */
async function sendArchive(
  ctx: ClientContext,
  local: string,
  remote: string,
  dirs: readonly string[],
  files: readonly LocalFile[],
  options: { signal?: AbortSignal | undefined; onProgress?: ((p: TransferProgress) => void) | undefined },
): Promise<number> {
  await requireExtract(ctx, options.signal);
  const parent = ctx.paths.dirname(remote);
  const archive = ctx.paths.join(
    parent,
    `.${ctx.paths.basename(remote).slice(0, 64)}.${process.pid}-${Date.now()}.outpost-sync.tar`,
  );
  await ctx.call('CreateDirectory', { path: parent }, { path: parent, signal: options.signal });
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  let bytes = 0;
  const pack = packTree(local, dirs, files, options.signal);
  const ws = new RemoteWriteStream(ctx, archive, { ...(options.signal ? { signal: options.signal } : {}) });
  await pipeline(
    pack,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        bytes += chunk.length;
        options.onProgress?.({
          file: '',
          bytes: Math.min(bytes, totalBytes),
          totalBytes,
          files: 0,
          totalFiles: files.length,
        });
        yield chunk;
      }
    },
    ws,
  );
  // Exact last-write times (tar keeps whole seconds), so the next sync compares to the millisecond.
  const times = Object.fromEntries(files.map((f) => [f.rel, Math.round(f.mtimeMs)]));
  const payload = { archive, target: remote, removeArchive: true, times };
  const run = runJob(ctx, 'outpost.extract', Buffer.from(JSON.stringify(payload)), {
    ...(options.signal ? { signal: options.signal } : {}),
  });
  try {
    await run.result;
  } catch (err) {
    await ctx.call('DeleteFile', { path: archive }).catch(() => {});
    throw err;
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

/** Whether the agent has the built-in jobs, by agent context (learned once). */
const extractSupport = new WeakMap<ClientContext, boolean>();

function noJobs(type: string): RemoteError {
  return new RemoteError('Unsupported', `the agent has no ${type} job`, 'ExecuteJob');
}

/**
 * Throws `Unsupported` before anything is uploaded when the agent lacks
 * outpost.extract: an empty payload is InvalidArgument from an Outpost
 * agent, Unsupported from another implementation of the contract.
 */
async function requireExtract(ctx: ClientContext, signal: AbortSignal | undefined): Promise<void> {
  let known = extractSupport.get(ctx);
  if (known === undefined) {
    try {
      await runJob(ctx, 'outpost.extract', Buffer.from('{}'), signal ? { signal } : {}).result;
      known = true;
    } catch (err) {
      if (isRemoteError(err, 'Unsupported')) known = false;
      else if (isRemoteError(err, 'InvalidArgument')) known = true;
      else throw err;
    }
    extractSupport.set(ctx, known);
  }
  if (!known) throw noJobs('outpost.extract');
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
  const [tree, manifest] = await Promise.all([
    walkLocal(local, signal),
    remoteManifest(ctx, remote, options.compare === 'hash', signal).catch((err: unknown) => {
      if (isRemoteError(err, 'Unsupported')) return 'unsupported' as const;
      throw err;
    }),
  ]);
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
