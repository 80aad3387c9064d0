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
 * `outpost put LOCAL… --hosts FILE PATH`: the same upload to every host.
 */
import type { Command } from 'commander';
import { type AgentClient, entryType, type TransferProgress } from '../client/index.js';
import {
  addConnectionOptions,
  type ConnectionFlags,
  type ConnectionSettings,
  connect,
  connectionSettings,
  endSession,
  looksRemote,
  parseRemote,
} from './connection.js';
import { CliError, clientAction, describeError, EXIT, UsageError } from './errors.js';
import { type HostResult, parseParallel, printSummary, readHostsFile, shortReason } from './fanout.js';
import { formatBytes } from './format.js';
import { interruptController, mapLimited } from './io.js';
import { createProgress, type ProgressReporter } from './progress.js';
import {
  checkLocalSource,
  endsWithSeparator,
  localBasename,
  localTotals,
  ProgressTotals,
  remoteJoin,
  skippedNote,
} from './transfer.js';

interface PutFlags extends ConnectionFlags {
  quiet?: boolean;
  /** false with --no-archive: a request per file even for many small files. */
  archive?: boolean;
  hosts?: string;
  parallel?: string;
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
  options: { signal: AbortSignal; progress: ProgressReporter | null },
): Promise<{ files: number; bytes: number; skipped: string[] }> {
  const sep = client.pathSeparator;
  const st = await client.stat(dest).catch((err: unknown) => {
    if ((err as { code?: string }).code === 'NotFound') return null;
    throw err;
  });
  const isDir = st !== null && entryType(st) === 'directory';
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

async function putOne(sources: string[], remote: string, flags: PutFlags): Promise<number> {
  const spec = parseRemote(remote);
  const settings = await connectionSettings(flags);
  const p = await plan(sources, flags.archive !== false);
  const stop = interruptController();
  const progress = createProgress({ label: 'put', quiet: flags.quiet === true });
  try {
    const client = await connect(spec, settings, stop.signal);
    try {
      const r = await uploadAll(client, p, spec.path, `${spec.label}:${spec.path}`, {
        signal: stop.signal,
        progress,
      });
      progress.done(r);
      const note = skippedNote('put', r.skipped, 'the sources');
      if (note && !flags.quiet) process.stderr.write(note);
    } finally {
      await endSession(client);
    }
    return EXIT.OK;
  } catch (err) {
    progress.clear();
    if (stop.interrupted()) return reportInterrupted();
    throw err;
  } finally {
    stop.dispose();
  }
}

function reportInterrupted(): number {
  process.stderr.write(
    'outpost: interrupted; files in progress were not committed (their temp files were removed)\n',
  );
  return EXIT.INTERRUPTED;
}

async function putMany(sources: string[], path: string, flags: PutFlags): Promise<number> {
  if (looksRemote(path) && !path.startsWith('/'))
    throw new UsageError(
      `with --hosts, the destination is only the remote PATH (e.g. /srv/app), not "${path}"`,
    );
  const entries = await readHostsFile(flags.hosts!);
  const parallel = parseParallel(flags.parallel, entries.length);
  const settings: ConnectionSettings[] = [];
  for (const e of entries) {
    try {
      settings.push(await connectionSettings({ ...flags, ...e.flags }));
    } catch (err) {
      throw new UsageError(`${flags.hosts}:${e.line}: ${(err as Error).message}`);
    }
  }
  const p = await plan(sources, flags.archive !== false);
  const stop = interruptController();
  try {
    const results = await mapLimited(entries, parallel, async (entry, i): Promise<HostResult> => {
      const label = entry.target.label;
      const t0 = performance.now();
      if (stop.interrupted()) return { label, ok: false, result: 'not run (interrupted)', ms: 0 };
      try {
        const client = await connect(entry.target, settings[i]!, stop.signal);
        try {
          const r = await uploadAll(client, p, path, `${label}:${path}`, {
            signal: stop.signal,
            progress: null,
          });
          const result = `${r.files} file${r.files === 1 ? '' : 's'}, ${formatBytes(r.bytes)}`;
          if (!flags.quiet) process.stderr.write(`${label}: done: ${result}\n`);
          return { label, ok: true, result, ms: performance.now() - t0 };
        } finally {
          await endSession(client);
        }
      } catch (err) {
        const reason = stop.interrupted()
          ? 'interrupted'
          : `error: ${shortReason(describeError(err).message)}`;
        return { label, ok: false, result: reason, ms: performance.now() - t0 };
      }
    });
    printSummary(results);
    if (stop.interrupted()) return EXIT.INTERRUPTED;
    return results.every((r) => r.ok) ? EXIT.OK : EXIT.FANOUT;
  } finally {
    stop.dispose();
  }
}

export function registerPut(program: Command): void {
  const cmd = program
    .command('put')
    .description(
      'upload files and directories to an agent (or to every host of --hosts); SHA-256 verified, atomic',
    )
    .argument('<paths...>', 'LOCAL… then HOST[:PORT]:PATH (with --hosts: LOCAL… then PATH)')
    .option('-q, --quiet', 'no progress and no summary line')
    .option('--no-archive', 'send a directory of many small files a file at a time, not as one archive')
    .option('--hosts <file>', 'upload to every host listed in FILE (one HOST[:PORT] per line)')
    .option('--parallel <n>', 'with --hosts: at most N hosts at once (default: all, up to 64)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost put ./dist web01:/srv/app/releases/42     # the directory becomes …/42 (or goes into it if it exists)
  outpost put app.tar.gz install.sh web01:/tmp/      # several sources: into the directory
  outpost put ./site --hosts hosts.txt /srv/www      # the same upload to every host

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
      if (flags.hosts !== undefined) return putMany(sources, dest, flags);
      if (flags.parallel !== undefined) throw new UsageError('--parallel only applies with --hosts FILE');
      return putOne(sources, dest, flags);
    }),
  );
}
