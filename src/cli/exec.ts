/**
 * `outpost exec HOST [options] -- CMD ARGS…`: run a command on an agent,
 * stream its stdout and stderr live to ours, exit with its exit code.
 *
 * - stdin: local stdin is passed when it is not a terminal (a pipe, a file)
 *   or with -i; its end closes the remote stdin. -n never passes it.
 * - exit code: the remote one; 128+N when it was killed by signal N.
 * - Ctrl-C (SIGINT) or SIGTERM: terminates the remote process tree, waits
 *   for it to end (up to 10 s), exits 130. A second Ctrl-C exits at once.
 *
 * `outpost exec --hosts FILE [--parallel N] -- CMD`: the same command on every
 * host at once; each output line is prefixed with its host; a summary table
 * (host, exit code or error, duration) ends the output on stderr. Exit code
 * 0 when every host ran the command and it exited 0, else 4.
 */
import { once } from 'node:events';
import type { Command } from 'commander';
import type { AgentClient, RemoteProcess, SpawnOptions } from '../client/index.js';
import { addConnectionOptions, collect, connect, connectionSettings, endSession } from './connection.js';
import { clientAction, EXIT, UsageError } from './errors.js';
import { mergeFlags, runOnHosts, type TargetFlags, targetsOf } from './fanout.js';
import { formatDuration } from './format.js';
import type { ResolvedTarget } from './hosts.js';
import { onInterrupt, pump, signalExitCode } from './io.js';
import { processHandle } from './processes.js';

interface ExecFlags extends TargetFlags {
  detach?: boolean;
  cwd?: string;
  env?: string[];
  shell?: boolean;
  stdin?: boolean;
}

/** How long to wait for the remote process to end after Ctrl-C before giving up. */
const KILL_WAIT_MS = 10_000;

function parseEnv(list: string[] | undefined, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    const name = eq < 0 ? item : item.slice(0, eq);
    if (name === '' || name.includes('\0'))
      throw new UsageError(`--env: "${item}" must be NAME=VALUE (or NAME to pass the local value)`);
    if (eq >= 0) out[name] = item.slice(eq + 1);
    else {
      const v = env[name];
      if (v === undefined)
        throw new UsageError(`--env: ${name} is not set locally; write --env ${name}=VALUE to give a value`);
      out[name] = v;
    }
  }
  return out;
}

function spawnOptions(flags: ExecFlags): SpawnOptions {
  if (flags.cwd !== undefined && flags.cwd === '')
    throw new UsageError('--cwd: give a directory on the agent');
  return {
    ...(flags.cwd !== undefined ? { cwd: flags.cwd } : {}),
    env: parseEnv(flags.env),
    shell: flags.shell === true,
  };
}

function exitText(exit: { code: number | null; signal: string | null }): string {
  return exit.code !== null ? `exit ${exit.code}` : `killed by ${exit.signal ?? 'a signal'}`;
}

/** Forwards local stdin to the remote process until it ends (then closes remote stdin) or `stop()` is called. */
function forwardStdin(proc: RemoteProcess): () => void {
  const remote = proc.stdin!;
  remote.on('error', () => {}); // the process may exit without reading its input
  let stopped = false;
  void (async () => {
    try {
      for await (const chunk of process.stdin) {
        if (stopped || remote.destroyed) break;
        if (!remote.write(chunk as Buffer)) await once(remote, 'drain');
      }
      if (!stopped && !remote.destroyed) remote.end();
    } catch {
      // local stdin failed or the remote stdin closed: nothing more to send
    }
  })();
  return () => {
    stopped = true;
    process.stdin.destroy();
  };
}

async function execOne(target: ResolvedTarget, argv: string[], flags: ExecFlags): Promise<number> {
  const settings = await connectionSettings(mergeFlags(flags, target.flags));
  const t = target.target;
  const options = spawnOptions(flags);
  const [file, ...args] = argv as [string, ...string[]];
  const passStdin = flags.stdin ?? process.stdin.isTTY !== true;

  const connecting = new AbortController();
  let proc: RemoteProcess | null = null;
  let interrupted = false;
  let giveUp: NodeJS.Timeout | undefined;
  const kill = () => {
    if (!proc) return;
    void proc.kill({ tree: true }).catch(() => {});
    giveUp = setTimeout(() => {
      process.stderr.write('outpost: the remote process did not end in time after Ctrl-C; exiting anyway\n');
      process.exit(EXIT.INTERRUPTED);
    }, KILL_WAIT_MS);
  };
  const disposeSignals = onInterrupt(() => {
    interrupted = true;
    connecting.abort();
    kill();
  });
  try {
    const client: AgentClient = await connect(t, settings, connecting.signal);
    let stopStdin: (() => void) | null = null;
    try {
      proc = await client.spawn(file, args, { ...options, stdin: passStdin });
      if (interrupted) kill();
      if (proc.stdin) stopStdin = forwardStdin(proc);
      let brokenPipe = false;
      const output = Promise.all([
        pump(proc.stdout, process.stdout),
        pump(proc.stderr, process.stderr),
      ]).catch((err: NodeJS.ErrnoException) => {
        // The reader of our output went away (`outpost exec … | head`): end the remote command like SIGPIPE would.
        if (err.code === 'EPIPE') {
          brokenPipe = true;
          proc?.stdout.resume();
          proc?.stderr.resume();
          kill();
          return;
        }
        throw err;
      });
      const [exit] = await Promise.all([proc.exited, output]);
      if (interrupted) return EXIT.INTERRUPTED;
      if (brokenPipe) return signalExitCode('SIGPIPE');
      return exit.code ?? signalExitCode(exit.signal);
    } finally {
      stopStdin?.();
      if (giveUp) clearTimeout(giveUp);
      await endSession(client);
    }
  } catch (err) {
    if (interrupted) return EXIT.INTERRUPTED;
    throw err;
  } finally {
    disposeSignals();
  }
}

/**
 * `exec --detach`: starts the command in a session the agent keeps (up to
 * its MaxDetachedSessionTimeout, default 24 h), with its output kept for
 * `outpost attach`; prints the handle and leaves.
 */
async function execDetached(names: string[], argv: string[], flags: ExecFlags): Promise<number> {
  const options = spawnOptions(flags);
  const [file, ...args] = argv as [string, ...string[]];
  return runOnHosts({
    names,
    flags,
    command: 'exec --detach',
    run: async (client, task) => {
      const d = await client.spawnDetached(file, args, { ...options, signal: task.signal });
      const handle = processHandle(d.sessionId, d.token);
      await task.print(
        task.fanout
          ? `${handle}\n`
          : `${handle}\nstarted ${file} (pid ${d.pid}); it keeps running. Follow it with: outpost attach ${task.label} ${handle}\n` +
              `(the agent keeps it for ${formatDuration(d.keptMs)} after it ends or while nobody attaches)\n`,
      );
      return {
        ok: true,
        keepSession: true,
        result: `detached ${handle}`,
        json: {
          host: task.label,
          handle,
          sessionId: d.sessionId,
          token: d.token,
          pid: d.pid,
          keptMs: d.keptMs,
        },
      };
    },
  });
}

async function execMany(names: string[], argv: string[], flags: ExecFlags): Promise<number> {
  const options = spawnOptions(flags);
  const [file, ...args] = argv as [string, ...string[]];
  const running = new Set<RemoteProcess>();
  return runOnHosts({
    names,
    flags,
    command: 'exec',
    // Ctrl-C: every running process tree is terminated first; a second Ctrl-C exits at once.
    onInterrupt: () => {
      for (const p of running) void p.kill({ tree: true }).catch(() => {});
      setTimeout(() => process.exit(EXIT.INTERRUPTED), KILL_WAIT_MS).unref();
    },
    run: async (client, task) => {
      const proc = await client.spawn(file, args, { ...options, stdin: false });
      running.add(proc);
      const onAbort = () => void proc.kill({ tree: true }).catch(() => {});
      task.signal.addEventListener('abort', onAbort, { once: true });
      try {
        await Promise.all([task.stdout(proc.stdout), task.stderr(proc.stderr)]);
        const exit = await proc.exited;
        return {
          ok: exit.code === 0,
          result: exitText(exit),
          json: { host: task.label, exitCode: exit.code, signal: exit.signal },
        };
      } finally {
        task.signal.removeEventListener('abort', onAbort);
        running.delete(proc);
      }
    },
  });
}

export function registerExec(program: Command): void {
  const cmd = program
    .command('exec')
    .description('run a command on an agent (or on every host of --hosts), streaming its output')
    .argument('[host]', 'HOST[:PORT], alias or @group of the agent(s) (omit it with --hosts)')
    .argument('[command...]', 'the command and its arguments; put them after -- when they have options')
    .option('--detach', 'start it, print a handle and leave; it keeps running (outpost attach HOST HANDLE)')
    .option('--cwd <dir>', "working directory on the agent (default: the product's root path)")
    .option(
      '-e, --env <name=value>',
      'set an environment variable (repeatable; NAME alone passes the local value)',
      collect,
    )
    .option('--shell', 'run the command line through the shell (/bin/sh -c; cmd.exe on Windows)')
    .option('-i, --stdin', 'pass local stdin even when it is a terminal (default: only when it is not)')
    .option('-n, --no-stdin', 'never pass local stdin (the remote stdin is closed at once)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost exec 10.0.0.5 -- uname -a
  outpost exec web01 --cwd /srv/app --env NODE_ENV=production -- npm run migrate
  outpost exec web01 --shell -- 'ls /var/log | wc -l'
  tar c ./site | outpost exec web01 -- tar x -C /srv/www      # local stdin goes to the remote command
  outpost exec --hosts hosts.txt --parallel 10 -- uptime     # every host; lines prefixed "web01: …"
  outpost exec @web --fail-fast -- systemctl restart app     # a group of the hosts file
  outpost exec --detach web01 -- ./deploy.sh                 # prints a handle; outpost attach web01 HANDLE

Exit code: the remote command's (128+N if killed by signal N); 1 bad usage, 2 connection failed,
3 the command could not be started (e.g. NotFound, AccessDenied), 130 Ctrl-C (the remote
process tree is terminated). With --hosts: 0 if every host exited 0, else 4 (see the summary).`,
  );
  cmd.action(
    clientAction(async (host: string | undefined, command: string[], flags: ExecFlags) => {
      // `exec --hosts FILE -- CMD`: the first word is the command's.
      const names = flags.hosts !== undefined || host === undefined ? [] : [host];
      const argv = flags.hosts !== undefined && host !== undefined ? [host, ...command] : command;
      if (flags.hosts === undefined && (host === undefined || command.length === 0))
        throw new UsageError('exec needs a host and a command: outpost exec HOST -- CMD ARGS…');
      if (argv.length === 0)
        throw new UsageError('exec --hosts needs a command: outpost exec --hosts FILE -- CMD ARGS…');
      if (flags.detach) {
        if (flags.stdin === true)
          throw new UsageError('-i cannot be used with --detach (nobody is there to type)');
        return execDetached(names, argv, flags);
      }
      const { targets, fanout } = await targetsOf(names, flags);
      if (!fanout) {
        if (flags.parallel !== undefined)
          throw new UsageError('--parallel only applies on several hosts (a @group, --hosts FILE)');
        return execOne(targets[0]!, argv, flags);
      }
      if (flags.stdin === true)
        throw new UsageError('-i cannot be used on several hosts (stdin is not fanned out)');
      return execMany(names, argv, flags);
    }),
  );
}
