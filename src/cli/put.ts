/**
 * `outpost put LOCAL… HOST:PATH`: uploads files and directory trees, like scp:
 *
 * - one source: when PATH is an existing directory (or ends with `/`), the
 *   source goes into it under its own name; otherwise PATH is the target
 *   itself (a directory source becomes PATH);
 * - several sources: PATH is a directory (created when missing) and each
 *   source goes into it under its own name.
 *
 * Directories are always copied whole. Every file is SHA-256 verified and
 * replaced atomically (temp name + Move), with its mode and last-write time
 * — except a directory of many small files (16 or more, averaging at most
 * 1 MiB), which goes as one tar stream that the agent extracts
 * (outpost.extract: a new directory appears whole, files in an existing
 * one are replaced one by one, each atomic); `--no-archive`, or an agent
 * without the job, sends it a file at a time.
 * Progress on stderr: a bar on a terminal, plain lines otherwise, nothing
 * with -q.
 *
 * Like scp, a new target's parent directory must exist, unless --parents.
 *
 * `outpost put LOCAL… @GROUP:PATH` or `--hosts FILE PATH`: the same upload
 * to every host, with one overall progress bar.
 */
import type { Command } from 'commander';
import { type AgentClient, entryType, type TransferProgress } from '../client/index.js';
import { addConnectionOptions, looksRemote } from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { formatBytes } from './format.js';
import { splitRemote } from './hosts.js';
import type { ProgressReporter } from './progress.js';
import {
  checkLocalSource,
  endsWithSeparator,
  localBasename,
  localTotals,
  ProgressTotals,
  remoteJoin,
  skippedNote,
} from './transfer.js';

interface PutFlags extends TargetFlags {
  quiet?: boolean;
  parents?: boolean;
  /** false with --no-archive: a request per file even for many small files. */
  archive?: boolean;
}

/** The parent of a remote path (either separator), or null for a root (`/`, `C:\\`). */
export function remoteParent(path: string): string | null {
  const trimmed = path.replace(/[\\/]+$/, '');
  const i = Math.max(trimmed.lastIndexOf('/'), trimmed.lastIndexOf('\\'));
  if (i < 0) return null;
  const parent = trimmed.slice(0, i);
  if (parent === '') return trimmed.startsWith('/') ? '/' : null;
  if (/^[A-Za-z]:$/.test(parent)) return `${parent}\\`;
  return parent;
}

interface Plan {
  sources: string[];
  totalFiles: number;
  totalBytes: number;
  /** Per source: a directory of enough small files to go as one archive stream (outpost.extract). */
  archive: boolean[];
}

/** A directory with at least this many files, averaging at most ARCHIVE_MAX_AVERAGE bytes, goes as one archive. */
const ARCHIVE_MIN_FILES = 16;
const ARCHIVE_MAX_AVERAGE = 1024 * 1024;

async function plan(sources: string[], useArchive = true): Promise<Plan> {
  let totalFiles = 0;
  let totalBytes = 0;
  const archive: boolean[] = [];
  for (const s of sources) {
    await checkLocalSource(s);
    const t = await localTotals(s);
    totalFiles += t.files;
    totalBytes += t.bytes;
    archive.push(
      useArchive && t.isDir && t.files >= ARCHIVE_MIN_FILES && t.bytes / t.files <= ARCHIVE_MAX_AVERAGE,
    );
  }
  return { sources, totalFiles, totalBytes, archive };
}

/** Uploads every source to one agent; returns what was sent and what was skipped. */
async function uploadAll(
  client: AgentClient,
  p: Plan,
  dest: string,
  where: string,
  options: { signal: AbortSignal; progress: ProgressReporter | null; parents: boolean },
): Promise<{ files: number; bytes: number; skipped: string[] }> {
  const sep = client.pathSeparator;
  const statOrNull = (path: string) =>
    client.stat(path, { signal: options.signal }).catch((err: unknown) => {
      if ((err as { code?: string }).code === 'NotFound') return null;
      throw err;
    });
  const st = await statOrNull(dest);
  const isDir = st !== null && entryType(st) === 'directory';
  // Like scp: a new target needs its parent directory, unless --parents.
  if (st === null && !options.parents) {
    const parent = remoteParent(dest);
    if (parent !== null && (await statOrNull(parent)) === null)
      throw new CliError(
        `${where}: the remote directory ${parent} does not exist; create it (outpost mkdir) or pass --parents`,
        EXIT.REMOTE,
      );
  }
  let targets: string[];
  if (p.sources.length > 1 || endsWithSeparator(dest)) {
    if (st && !isDir)
      throw new CliError(
        `${where} is a ${entryType(st)}, not a directory; ${p.sources.length > 1 ? 'several sources need a directory to go into' : 'remove the trailing separator to replace it'}`,
        EXIT.USAGE,
      );
    if (!isDir) await client.mkdir(dest, { signal: options.signal });
    targets = p.sources.map((s) => remoteJoin(dest, localBasename(s), sep));
  } else {
    targets = [isDir ? remoteJoin(dest, localBasename(p.sources[0]!), sep) : dest];
  }
  const totals = new ProgressTotals(p.totalBytes, p.totalFiles);
  const skipped: string[] = [];
  for (const [i, source] of p.sources.entries()) {
    const transfer = {
      signal: options.signal,
      verify: true,
      ...(options.progress
        ? { onProgress: (x: TransferProgress) => options.progress!.update(totals.map(x)) }
        : {}),
    };
    // Many small files: one archive stream extracted on the agent (falls back on an agent without it).
    const r = p.archive[i]
      ? await client.uploadArchive(source, targets[i]!, transfer)
      : await client.upload(source, targets[i]!, transfer);
    totals.add(r);
    skipped.push(...r.skipped.map((s) => `${localBasename(source)}/${s}`));
  }
  return { ...totals.done, skipped };
}

export function registerPut(program: Command): void {
  const cmd = program
    .command('put')
    .description(
      'upload files and directories to an agent (or to every host of --hosts); SHA-256 verified, atomic',
    )
    .argument(
      '<paths...>',
      'LOCAL… then HOST[:PORT]:PATH, ALIAS:PATH or @GROUP:PATH (with --hosts: LOCAL… then PATH)',
    )
    .option('-q, --quiet', 'no progress and no summary line')
    .option('--no-archive', 'send a directory of many small files a file at a time, not as one archive')
    .option('--parents', "create the target's missing parent directories (default: fail, like scp)");
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost put ./dist web01:/srv/app/releases/42     # the directory becomes …/42 (or goes into it if it exists)
  outpost put app.tar.gz install.sh web01:/tmp/      # several sources: into the directory
  outpost put ./site --hosts hosts.txt /srv/www      # the same upload to every host
  outpost put ./site @web:/srv/www                   # every host of the group; one overall progress bar

Progress goes to stderr: a bar with percent, throughput and ETA on a terminal, plain lines otherwise.
Exit code: 0 done; 1 bad usage or unreadable local file; 2 connection failed; 3 remote error (AccessDenied,
hash mismatch, …); 130 Ctrl-C (the file in progress is not committed). With --hosts: 0 all hosts, else 4.`,
  );
  cmd.action(
    clientAction(async (paths: string[], flags: PutFlags) => {
      if (paths.length < 2)
        throw new UsageError(
          flags.hosts !== undefined
            ? 'put --hosts needs LOCAL… and a remote PATH: outpost put ./dist --hosts FILE /srv/app'
            : 'put needs LOCAL… and HOST:PATH: outpost put ./dist web01:/srv/app',
        );
      const sources = paths.slice(0, -1);
      const dest = paths[paths.length - 1]!;
      for (const s of sources)
        if (looksRemote(s))
          throw new UsageError(`put sends local files; "${s}" is remote (to fetch it, use outpost get)`);
      // With --hosts the destination may be only the remote PATH.
      const bare = flags.hosts !== undefined && !dest.startsWith('@') && !looksRemote(dest);
      const { names, path } = bare ? { names: [], path: dest } : oneName(splitRemote(dest));
      const p = await plan(sources, flags.archive !== false);
      return runOnHosts({
        names,
        flags,
        command: 'put',
        progress: { label: 'put', quiet: flags.quiet === true },
        run: async (client, task) => {
          const r = await uploadAll(client, p, path, `${task.label}:${path}`, {
            signal: task.signal,
            progress: task.progress,
            parents: flags.parents === true,
          });
          if (!task.fanout) task.progress?.done(r);
          const note = skippedNote('put', r.skipped, 'the sources');
          if (note && !flags.quiet && !task.json) process.stderr.write(note);
          return {
            ok: true,
            result: `${r.files} file${r.files === 1 ? '' : 's'}, ${formatBytes(r.bytes)}`,
            json: { host: task.label, path, files: r.files, bytes: r.bytes, skipped: r.skipped },
          };
        },
      });
    }),
  );
}

function oneName(r: { name: string; path: string }): { names: string[]; path: string } {
  return { names: [r.name], path: r.path };
}
