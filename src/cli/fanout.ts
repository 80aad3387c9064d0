/**
 * The one runner behind every client command: the targets from
 * `resolveTargets` (HOST[:PORT], aliases, `@group`, `--hosts FILE`), their
 * connection settings, a session per host, and the outcome.
 *
 * - One target named directly: the command runs as it always did (its
 *   errors are one line with their own exit code; `--json` prints the
 *   command's JSON value).
 * - Several (a group, `--hosts`, or more than one name): every host at
 *   once (`--parallel N`), output lines prefixed with their host, a summary
 *   table on stderr (HOST, RESULT, TIME), exit code 4 when any host failed;
 *   `--fail-fast` stops at the first failure (running hosts are
 *   interrupted, the others not started). With `--json`: JSON Lines on
 *   stdout, `{"type":"output",…}`, `{"type":"result",…}` per host and a last
 *   `{"type":"summary",…}`.
 *
 * Wiring a command: `runOnHosts({ names, flags, run: async (client, task) => … })`.
 * Ctrl-C aborts each host's own AbortController (no listener piles up on a
 * shared signal, hence no MaxListenersExceededWarning at 50 hosts).
 */
import { Readable } from 'node:stream';
import type { AgentClient, TransferProgress } from '../client/index.js';
import {
  type ConnectionFlags,
  type ConnectionSettings,
  connect,
  connectionSettings,
  endSession,
} from './connection.js';
import { describeError, EXIT, UsageError } from './errors.js';
import { bold, colorize, formatDuration, red, table, useColor } from './format.js';
import { isGroupName, loadHostsConfig, parsePortFlag, type ResolvedTarget, resolveTargets } from './hosts.js';
import { drained, mapLimited, onInterrupt } from './io.js';
import { createProgress, type ProgressReporter } from './progress.js';

/** The options every client command has (addConnectionOptions). */
export interface TargetFlags extends ConnectionFlags {
  port?: string | undefined;
  config?: string | undefined;
  hosts?: string | undefined;
  parallel?: string | undefined;
  failFast?: boolean | undefined;
  json?: boolean | undefined;
}

/** What a command's `run` gets for one host. */
export interface HostTask {
  readonly target: ResolvedTarget;
  readonly label: string;
  readonly index: number;
  readonly settings: ConnectionSettings;
  /** True when running on several hosts. */
  readonly fanout: boolean;
  readonly json: boolean;
  /** Aborted on Ctrl-C, and with --fail-fast when another host failed. */
  readonly signal: AbortSignal;
  /** Writes this host's stdout/stderr output (prefixed, or as JSON records, when fanning out). */
  readonly stdout: (src: Readable) => Promise<void>;
  readonly stderr: (src: Readable) => Promise<void>;
  /** Writes text lines to this host's stdout (prefixed when fanning out; nothing with --json). */
  readonly print: (text: string) => Promise<void>;
  /** Transfer progress of this host (one overall bar when fanning out), or null with -q / --json. */
  readonly progress: ProgressReporter | null;
}

/** How one host went. */
export interface HostOutcome {
  ok: boolean;
  /** For the summary: `exit 0`, `12 files, 3.4 MiB`, `3 entries`. */
  result: string;
  /** The command's result as JSON (printed with --json). */
  json?: unknown;
  /** Leave the session on the agent (exec --detach) instead of ending it. */
  keepSession?: boolean;
  /** Exit code when on a single target (default: 0 when ok, else 3). */
  exitCode?: number;
}

export interface RunOptions {
  /** Names from the command line (HOST[:PORT], alias, @group). */
  names: readonly string[];
  flags: TargetFlags;
  /** The command's name, for messages. */
  command: string;
  /** Transfer commands: a progress label (put/get); none: no progress. */
  progress?: { label: string; quiet: boolean };
  run(client: AgentClient, task: HostTask): Promise<HostOutcome>;
  /** Extra per-host wiring when fanning out (e.g. exec kills its processes on Ctrl-C itself). */
  onInterrupt?: () => void;
}

/** `{ ...cli, ...host }`, where a host's key or key file replaces the command line's. */
export function mergeFlags(cli: ConnectionFlags, host: Partial<ConnectionFlags>): ConnectionFlags {
  const merged: ConnectionFlags = { ...cli };
  if (host.key !== undefined || host.keyFile !== undefined) {
    delete merged.key;
    delete merged.keyFile;
  }
  if (host.thumbprint !== undefined || host.ca !== undefined) {
    delete merged.thumbprint;
    delete merged.ca;
  }
  return { ...merged, ...host };
}

/** The targets of a command and whether it fans out. */
export async function targetsOf(
  names: readonly string[],
  flags: TargetFlags,
): Promise<{ targets: ResolvedTarget[]; fanout: boolean }> {
  const config = await loadHostsConfig(flags.config);
  const targets = await resolveTargets(names, {
    hostsFile: flags.hosts,
    ctx: { config, port: parsePortFlag(flags.port) },
  });
  if (targets.length === 0)
    throw new UsageError('no hosts to run on: name HOST[:PORT], an alias or @group, or pass --hosts FILE');
  const fanout = targets.length > 1 || flags.hosts !== undefined || names.some(isGroupName);
  return { targets, fanout };
}

/** Runs a command on its targets; returns the exit code. */
export async function runOnHosts(opts: RunOptions): Promise<number> {
  const { flags } = opts;
  const { targets, fanout } = await targetsOf(opts.names, flags);
  if (!fanout && flags.parallel !== undefined)
    throw new UsageError(
      '--parallel only applies on several hosts (a @group, --hosts FILE or several names)',
    );
  // Every host's settings are checked before anything runs.
  const settings: ConnectionSettings[] = [];
  for (const t of targets) {
    try {
      settings.push(await connectionSettings(mergeFlags(flags, t.flags)));
    } catch (err) {
      if (!fanout || !(err instanceof UsageError)) throw err;
      throw new UsageError(`${t.source}: ${err.message}`);
    }
  }
  return fanout ? runMany(opts, targets, settings) : runOne(opts, targets[0]!, settings[0]!);
}

async function runOne(
  opts: RunOptions,
  target: ResolvedTarget,
  settings: ConnectionSettings,
): Promise<number> {
  const json = opts.flags.json === true;
  const stop = new AbortController();
  const dispose = onInterrupt(() => {
    opts.onInterrupt?.();
    stop.abort();
  });
  const progress =
    opts.progress && !json
      ? createProgress({ label: opts.progress.label, quiet: opts.progress.quiet })
      : null;
  try {
    const client = await connect(target.target, settings, stop.signal);
    let outcome: HostOutcome | undefined;
    try {
      outcome = await opts.run(client, {
        target,
        label: target.target.label,
        index: 0,
        settings,
        fanout: false,
        json,
        signal: stop.signal,
        stdout: (src) =>
          json ? pumpJsonLines(src, target.target.label, 'stdout') : pumpTo(src, process.stdout),
        stderr: (src) =>
          json ? pumpJsonLines(src, target.target.label, 'stderr') : pumpTo(src, process.stderr),
        print: async (text) => {
          if (!json && !process.stdout.write(text)) await drained(process.stdout);
        },
        progress,
      });
    } finally {
      await finish(client, outcome);
    }
    if (json && outcome.json !== undefined)
      process.stdout.write(`${JSON.stringify(outcome.json, null, 2)}\n`);
    return outcome.exitCode ?? (outcome.ok ? EXIT.OK : EXIT.REMOTE);
  } catch (err) {
    progress?.clear();
    if (stop.signal.aborted) {
      process.stderr.write(
        `outpost: interrupted${opts.progress ? '; files in progress were not committed (their temp files were removed)' : ''}\n`,
      );
      return EXIT.INTERRUPTED;
    }
    throw err;
  } finally {
    dispose();
  }
}

/** Ends the session, unless the command asked to keep it (then only the connection closes). */
async function finish(client: AgentClient, outcome: HostOutcome | undefined): Promise<void> {
  if (outcome?.keepSession) await client.close({ keepSession: true }).catch(() => {});
  else await endSession(client);
}

async function pumpTo(src: Readable, out: NodeJS.WritableStream): Promise<void> {
  for await (const chunk of src) if (!out.write(chunk as Buffer)) await drained(out);
}

/** JSON Lines for one host's stream: `{"type":"output","host":…,"stream":…,"text":…}` per line. */
async function pumpJsonLines(src: Readable, host: string, stream: 'stdout' | 'stderr'): Promise<void> {
  const sink = {
    write(chunk: Buffer): boolean {
      const text = chunk.toString('utf8').replace(/\n$/, '');
      return process.stdout.write(`${JSON.stringify({ type: 'output', host, stream, text })}\n`);
    },
  };
  await pumpPrefixed(src, sink as unknown as NodeJS.WritableStream, '', process.stdout);
}

async function runMany(
  opts: RunOptions,
  targets: ResolvedTarget[],
  settings: ConnectionSettings[],
): Promise<number> {
  const { flags } = opts;
  const json = flags.json === true;
  const parallel = parseParallel(flags.parallel, targets.length);
  const labels = targets.map((t) => t.target.label);
  const outPrefixes = hostPrefixes(labels, process.stdout);
  const errPrefixes = hostPrefixes(labels, process.stderr);
  const controllers = targets.map(() => new AbortController());
  let interrupted = false;
  let failedFast = false;
  const abortAll = () => {
    for (const c of controllers) c.abort();
  };
  const dispose = onInterrupt(() => {
    interrupted = true;
    opts.onInterrupt?.();
    abortAll();
  });
  const overall =
    opts.progress && !json && !opts.progress.quiet
      ? new OverallProgress(opts.progress.label, targets.length)
      : null;
  try {
    const results = await mapLimited(targets, parallel, async (t, i): Promise<HostResult> => {
      const label = labels[i]!;
      const t0 = performance.now();
      if (interrupted) return { label, ok: false, result: 'not run (interrupted)', ms: 0 };
      if (failedFast) return { label, ok: false, result: 'not run (--fail-fast)', ms: 0 };
      const signal = controllers[i]!.signal;
      let outcome: HostOutcome | undefined;
      try {
        const client = await connect(t.target, settings[i]!, signal);
        try {
          outcome = await opts.run(client, {
            target: t,
            label,
            index: i,
            settings: settings[i]!,
            fanout: true,
            json,
            signal,
            stdout: (src) =>
              json ? pumpJsonLines(src, label, 'stdout') : pumpPrefixed(src, process.stdout, outPrefixes[i]!),
            stderr: (src) =>
              json ? pumpJsonLines(src, label, 'stderr') : pumpPrefixed(src, process.stderr, errPrefixes[i]!),
            print: async (text) => {
              if (!json)
                await pumpPrefixed(Readable.from([Buffer.from(text)]), process.stdout, outPrefixes[i]!);
            },
            progress: overall ? overall.host(i) : null,
          });
        } finally {
          await finish(client, outcome);
        }
      } catch (err) {
        outcome = {
          ok: false,
          result: interrupted
            ? 'interrupted'
            : failedFast && signal.aborted
              ? 'stopped (--fail-fast)'
              : `error: ${shortReason(describeError(err).message)}`,
        };
      }
      const r: HostResult = { label, ok: outcome.ok, result: outcome.result, ms: performance.now() - t0 };
      if (json)
        process.stdout.write(
          `${JSON.stringify({
            type: 'result',
            host: label,
            address: t.target.host,
            port: t.target.port,
            ok: r.ok,
            result: r.result,
            ms: Math.round(r.ms),
            ...(outcome.json !== undefined ? { data: outcome.json } : {}),
          })}\n`,
        );
      if (!r.ok && flags.failFast && !failedFast) {
        failedFast = true;
        controllers.forEach((c, j) => {
          if (j !== i) c.abort();
        });
      }
      return r;
    });
    overall?.finish();
    const failed = results.filter((r) => !r.ok).length;
    if (json)
      process.stdout.write(
        `${JSON.stringify({ type: 'summary', hosts: results.length, failed, interrupted })}\n`,
      );
    else printSummary(results);
    if (interrupted) return EXIT.INTERRUPTED;
    return failed === 0 ? EXIT.OK : EXIT.FANOUT;
  } finally {
    dispose();
  }
}

/** One bar (or plain lines) for a transfer to many hosts: the sum of every host's progress. */
class OverallProgress {
  private readonly reporter: ProgressReporter;
  private readonly perHost: TransferProgress[];
  constructor(label: string, hosts: number) {
    this.reporter = createProgress({ label: `${label} ×${hosts}` });
    this.perHost = Array.from({ length: hosts }, () => ({
      file: '',
      bytes: 0,
      totalBytes: 0,
      files: 0,
      totalFiles: 0,
    }));
  }
  host(i: number): ProgressReporter {
    return {
      update: (p) => {
        this.perHost[i] = p;
        this.reporter.update(this.sum());
      },
      done: () => {},
      clear: () => {},
    };
  }
  private sum(): TransferProgress {
    const s: TransferProgress = { file: '', bytes: 0, totalBytes: 0, files: 0, totalFiles: 0 };
    for (const p of this.perHost) {
      s.bytes += p.bytes;
      s.totalBytes += p.totalBytes;
      s.files += p.files;
      s.totalFiles += p.totalFiles;
    }
    return s;
  }
  finish(): void {
    const s = this.sum();
    this.reporter.done({ files: s.files, bytes: s.bytes });
  }
}

/** Parses --parallel (default: every host at once, at most 64). */
export function parseParallel(text: string | undefined, hosts: number): number {
  if (text === undefined) return Math.max(1, Math.min(hosts, 64));
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 1024)
    throw new UsageError(`--parallel: "${text}" must be a number of hosts from 1 to 1024`);
  return n;
}

/** Longest line kept before it is written out without its end (bounded memory per stream). */
const MAX_LINE = 64 * 1024;

/**
 * Copies `src` to `out` line by line, each line prefixed. A last line
 * without a newline gets one. Honours `out`'s backpressure.
 */
export async function pumpPrefixed(
  src: Readable,
  out: NodeJS.WritableStream,
  prefix: string,
  drains: NodeJS.WritableStream = out,
): Promise<void> {
  let partial: Buffer = Buffer.alloc(0);
  const write = async (text: Buffer) => {
    if (!out.write(Buffer.concat([Buffer.from(prefix), text]))) await drained(drains);
  };
  for await (const chunk of src) {
    let data = partial.length > 0 ? Buffer.concat([partial, chunk as Buffer]) : (chunk as Buffer);
    let nl = data.indexOf(10);
    while (nl >= 0) {
      await write(data.subarray(0, nl + 1));
      data = data.subarray(nl + 1);
      nl = data.indexOf(10);
    }
    if (data.length >= MAX_LINE) {
      await write(Buffer.concat([data, Buffer.from('\n')]));
      data = Buffer.alloc(0);
    }
    partial = Buffer.from(data);
  }
  if (partial.length > 0) await write(Buffer.concat([partial, Buffer.from('\n')]));
}

/** Prefixes for each host: `web01:   ` (aligned), colored when the stream is a colored terminal. */
export function hostPrefixes(labels: string[], stream: NodeJS.WriteStream): string[] {
  const width = Math.max(...labels.map((l) => l.length)) + 1;
  const color = useColor(stream);
  return labels.map((l, i) => {
    const text = `${l}:`.padEnd(width);
    return `${color ? colorize(text, i) : text} `;
  });
}

/** One host's outcome, for the summary. */
export interface HostResult {
  label: string;
  ok: boolean;
  /** `exit 0`, `exit 3`, `killed by SIGKILL`, `12 files, 3.4 MiB`, or the error (first clause). */
  result: string;
  ms: number;
}

/** Prints the summary table and a last line saying how many hosts failed. */
export function printSummary(results: HostResult[], stream: NodeJS.WriteStream = process.stderr): void {
  const color = useColor(stream);
  const rows = [['HOST', 'RESULT', 'TIME'], ...results.map((r) => [r.label, r.result, formatDuration(r.ms)])];
  const lines = table(rows).split('\n');
  const body = lines.map((l, i) => (i === 0 ? bold(l, color) : results[i - 1]!.ok ? l : red(l, color)));
  const failed = results.filter((r) => !r.ok).length;
  const last =
    failed === 0
      ? `all ${results.length} hosts succeeded`
      : `${failed} of ${results.length} host${results.length === 1 ? '' : 's'} failed`;
  stream.write(`\n${body.join('\n')}\n${failed ? red(last, color) : last}\n`);
}

/** The first clause of an error message: what happened, without the advice. */
export function shortReason(message: string): string {
  const i = message.indexOf('; ');
  return i < 0 ? message : message.slice(0, i);
}
