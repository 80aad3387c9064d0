/**
 * The agent's processes, from any terminal (Outpost extensions, see
 * docs/PROTOCOL.md; an agent without them is named as lacking them):
 *
 *   outpost ps HOST [--json]            every running process of your sessions on the agent
 *   outpost kill HOST ID [--no-tree]    stop one (its whole tree by default); ID is SESSION.TOKEN or a pid
 *   outpost attach HOST HANDLE          follow a command started with `exec --detach`: all its output
 *                                       since it started, then live; exits with its exit code
 *
 * "Your" sessions: those of the same principal (the same key in mode aes,
 * the same address otherwise), as the contract's resume rule (§2).
 */
import type { Command } from 'commander';
import type { AgentProcessInfo } from '../client/index.js';
import { addConnectionOptions, connect, connectionSettings, endSession } from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { mergeFlags, runOnHosts, type TargetFlags, targetsOf } from './fanout.js';
import { formatDuration, table } from './format.js';
import { onInterrupt, pump, signalExitCode } from './io.js';

/** `SESSION.TOKEN`, how the CLI names a process of the agent (and a detached command's handle). */
export function processHandle(sessionId: number, token: number): string {
  return `${sessionId}.${token}`;
}

/** Parses `SESSION.TOKEN`. */
export function parseHandle(text: string, what: string): { sessionId: number; token: number } {
  const m = /^(\d{1,10})\.(\d{1,10})$/.exec(text.trim());
  const sessionId = m ? Number(m[1]) : Number.NaN;
  const token = m ? Number(m[2]) : Number.NaN;
  if (!m || sessionId < 1 || sessionId > 0x7fffffff || token < 1 || token > 0x7fffffff)
    throw new UsageError(
      `${what}: "${text}" is not a handle; give SESSION.TOKEN as outpost ps or exec --detach printed it`,
    );
  return { sessionId, token };
}

function psRows(list: AgentProcessInfo[]): string[][] {
  const now = Date.now();
  return [
    ['ID', 'PID', 'SINCE', 'STATE', 'COMMAND'],
    ...list.map((p) => [
      processHandle(p.sessionId, p.token),
      String(p.pid),
      formatDuration(now - p.started.getTime()),
      `${p.running ? 'running' : p.pid > 0 ? 'exited' : 'starting'}${p.detached ? ', detached' : p.attached ? '' : ', orphaned'}`,
      p.command,
    ]),
  ];
}

function registerPs(program: Command): void {
  const cmd = program
    .command('ps')
    .description("list the agent's running processes (of your sessions: same key or address)")
    .argument('<host>', 'HOST[:PORT], alias or @group');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ps web01
  outpost ps @web --json

Columns: ID (SESSION.TOKEN, for outpost kill and attach), PID, SINCE, STATE, COMMAND.
Needs an Outpost agent (ListAgentProcesses is an extension); another agent is named as lacking it.`,
  );
  cmd.action(
    clientAction(async (host: string, flags: TargetFlags) =>
      runOnHosts({
        names: [host],
        flags,
        command: 'ps',
        run: async (client, task) => {
          const all = await client.agentProcesses({ signal: task.signal });
          // This command's own session runs nothing; list the others.
          const list = all.filter((p) => p.sessionId !== client.sessionId);
          if (list.length) await task.print(`${table(psRows(list))}\n`);
          else if (!task.fanout) await task.print('no processes\n');
          return {
            ok: true,
            result: `${list.length} process${list.length === 1 ? '' : 'es'}`,
            json: list.map((p) => ({
              id: processHandle(p.sessionId, p.token),
              ...p,
              started: p.started.toISOString(),
            })),
          };
        },
      }),
    ),
  );
}

function registerKill(program: Command): void {
  const cmd = program
    .command('kill')
    .description('stop a process of the agent (its whole tree): SIGTERM, then SIGKILL after 5 s')
    .argument('<host>', 'HOST[:PORT] or alias')
    .argument('<id>', 'SESSION.TOKEN as outpost ps printed it, or the pid')
    .option('--no-tree', 'only the process, not its children');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ps web01
  outpost kill web01 1234567.3
  outpost kill web01 48211            # by pid

Exit code: 0 signalled; 3 no such process of yours (or the agent lacks the extension).`,
  );
  cmd.action(
    clientAction(async (host: string, id: string, flags: TargetFlags & { tree?: boolean }) =>
      runOnHosts({
        names: [host],
        flags,
        command: 'kill',
        run: async (client, task) => {
          let handle: { sessionId: number; token: number };
          if (/^\d+$/.test(id)) {
            const pid = Number(id);
            const found = (await client.agentProcesses({ signal: task.signal })).find((p) => p.pid === pid);
            if (!found)
              throw new CliError(
                `no process with pid ${pid} among yours on ${task.label}; see outpost ps ${task.label}`,
                EXIT.REMOTE,
              );
            handle = found;
          } else handle = parseHandle(id, 'kill');
          await client.killAgentProcess(handle.sessionId, handle.token, {
            tree: flags.tree !== false,
            signal: task.signal,
          });
          const text = processHandle(handle.sessionId, handle.token);
          if (!task.json)
            await task.print(`signalled ${text}${flags.tree !== false ? ' and its children' : ''}\n`);
          return {
            ok: true,
            result: `signalled ${text}`,
            json: { host: task.label, id: text, tree: flags.tree !== false },
          };
        },
      }),
    ),
  );
}

function registerAttach(program: Command): void {
  const cmd = program
    .command('attach')
    .description('follow a command started with exec --detach: its output since it started, then live')
    .argument('<host>', 'HOST[:PORT] or alias')
    .argument('<handle>', 'SESSION.TOKEN as exec --detach printed it');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost exec --detach web01 -- ./deploy.sh     # prints a handle, e.g. 1234567.1
  outpost attach web01 1234567.1

Exit code: the command's (128+N if killed by signal N); 130 Ctrl-C (the command keeps running: attach
again later); 3 the handle is gone (it ended and was attached already, or its session timed out).
Attaching needs the same principal as the start: the same key in mode aes, the same address otherwise.`,
  );
  cmd.action(
    clientAction(async (host: string, handleText: string, flags: TargetFlags) => {
      const handle = parseHandle(handleText, 'attach');
      const { targets, fanout } = await targetsOf([host], flags);
      if (fanout) throw new UsageError('attach follows one command on one agent; name one host');
      const t = targets[0]!;
      const settings = await connectionSettings(mergeFlags(flags, t.flags));
      const client = await connect(t.target, settings, undefined, handle.sessionId);
      let keep = false;
      const dispose = onInterrupt(() => {
        // Leave it running: detached again, for a later attach.
        keep = true;
        process.stderr.write(
          `outpost: detached again; it keeps running. Attach later: outpost attach ${host} ${handleText}\n`,
        );
        void client.close({ keepSession: true }).finally(() => process.exit(EXIT.INTERRUPTED));
      });
      try {
        if (client.sessionId !== handle.sessionId)
          throw new CliError(
            `${handleText} is gone from ${t.target.label}: it ended and its output was read by an earlier attach, or its session timed out (MaxDetachedSessionTimeout)`,
            EXIT.REMOTE,
          );
        const proc = await client.attachProcess(handle.token);
        await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
        const exit = await proc.exited;
        return exit.code ?? signalExitCode(exit.signal);
      } finally {
        dispose();
        if (!keep) await endSession(client);
      }
    }),
  );
}

export function registerProcesses(program: Command): void {
  registerPs(program);
  registerKill(program);
  registerAttach(program);
}
