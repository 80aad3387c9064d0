/**
 * `outpost job HOST TYPE [--payload FILE | --data TEXT]`: runs a job on the
 * agent (ExecuteJob) — a built-in `outpost.*` type or one of an extension
 * shipped with `outpost ext push` — with its log lines live on stderr
 * (`[info] …`) and its result bytes on stdout. Ctrl-C cancels the job and
 * waits until the agent has stopped it (exit 130).
 *
 * Exit code by outcome: 0 the job succeeded; 3 it failed (Internal, with
 * its message), is not installed (Unsupported: the message lists what is),
 * was canceled or crashed its host; 2 the connection failed.
 */
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { isRemoteError, type JobLogLine } from '../client/index.js';
import { addConnectionOptions } from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { useColor } from './format.js';

interface JobFlags extends TargetFlags {
  payload?: string;
  data?: string;
  quiet?: boolean;
}

const LEVEL_COLORS: Record<JobLogLine['level'], string> = {
  debug: '\x1b[2m',
  info: '',
  warning: '\x1b[33m',
  error: '\x1b[31m',
};

/** `[level] text` for stderr. */
export function formatLogLine(line: JobLogLine, color: boolean): string {
  const text = `[${line.level}] ${line.text}`;
  const c = LEVEL_COLORS[line.level];
  return color && c ? `${c}${text}\x1b[0m\n` : `${text}\n`;
}

/** Says what the agent lacks when ExecuteJob itself is unknown there. */
export function jobsUnsupported(err: unknown, where: string): never {
  if (isRemoteError(err, 'Unsupported') && !/is not installed/.test(err.message))
    throw new CliError(
      `${where} does not run jobs (it answered ExecuteJob with Unsupported: ${err.message}); jobs need an Outpost agent`,
      EXIT.REMOTE,
    );
  throw err;
}

export function registerJob(program: Command): void {
  const cmd = program
    .command('job')
    .description("run a job on an agent (ExecuteJob): live log lines on stderr, the job's result on stdout")
    .argument('<host>', 'HOST[:PORT], an alias, or @group (every host of it)')
    .argument('<type>', 'job type: outpost.manifest, outpost.extract, outpost.archive, or an extension’s')
    .option('--payload <file>', 'the payload bytes, from FILE (- for stdin)')
    .option('--data <text>', 'the payload as text (e.g. JSON: \'{"path":"/srv/app"}\')')
    .option('-q, --quiet', 'leave out debug log lines');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost job web01 outpost.manifest --data '{"path":"/srv/app"}'     # the NDJSON goes as JobData; result: totals
  outpost job web01 example.hello --data '{"name":"web01"}'
  outpost job web01 acme.migrate --payload plan.bin > result.bin
  outpost job @web example.hello --data '{"name":"fleet"}'           # every host of a group

Ctrl-C cancels the job (the agent stops it and the processes it started) and exits 130.
Exit code: 0 the job succeeded; 2 connection failed; 3 the job failed, is not installed (the message lists
what is), was canceled, or crashed its host.`,
  );
  cmd.action(
    clientAction(async (host: string, type: string, flags: JobFlags) => {
      if (flags.payload !== undefined && flags.data !== undefined)
        throw new UsageError('give the payload once: --payload FILE or --data TEXT');
      const payload =
        flags.payload === '-'
          ? await readStdin()
          : flags.payload !== undefined
            ? await readFile(flags.payload)
            : Buffer.from(flags.data ?? '', 'utf8');
      // One runner for one host or many (@group, --hosts): log lines prefixed by host when fanning out.
      return runOnHosts({
        names: [host],
        flags,
        command: 'job',
        run: async (client, task) => {
          const color = !task.fanout && !task.json && useColor(process.stderr);
          const run = client.runJob(type, payload, { signal: task.signal });
          const quiet = flags.quiet === true;
          const logs = Readable.from(
            (async function* () {
              for await (const line of run.logs) {
                if (quiet && line.level === 'debug') continue;
                yield Buffer.from(formatLogLine(line, color));
              }
            })(),
          );
          const logsDone = task.stderr(logs);
          let result: Buffer;
          try {
            result = await run.result;
          } catch (err) {
            await logsDone.catch(() => {});
            if (task.signal.aborted && isRemoteError(err, 'Canceled'))
              return { ok: false, result: 'canceled', exitCode: EXIT.INTERRUPTED };
            return jobsUnsupported(err, task.label);
          }
          await logsDone;
          if (result.length > 0 && !task.json) await task.stdout(Readable.from([result]));
          return {
            ok: true,
            result: `${result.length} byte${result.length === 1 ? '' : 's'} of result`,
            json: { host: task.label, type, result: result.toString('utf8') },
          };
        },
      });
    }),
  );
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
