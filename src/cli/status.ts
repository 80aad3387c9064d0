/**
 * `outpost status [--config PATH | --socket PATH] [--json]`: what the agent on
 * this machine is doing, through its control socket (owner-only): version,
 * uptime, config, listener, outbound links, sessions, rejected handshakes.
 */
import type { Command } from 'commander';
import type { AgentStatus } from '../agent/status.js';
import { askAgent, type ControlFlags } from './control-target.js';
import { CliError, clientAction, EXIT } from './errors.js';

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The human-readable form of a status answer. */
export function formatStatus(st: AgentStatus): string {
  const lines: string[] = [];
  const l = st.listener;
  lines.push(
    `Outpost agent ${st.version}, pid ${st.pid}, up ${duration(st.uptimeMs)} (since ${st.startedAt})`,
  );
  lines.push(`config:    ${st.configPath ?? '(none)'}`);
  lines.push(
    `listener:  ${l.address}:${l.port}, mode ${l.mode}${l.thumbprint ? `, thumbprint ${l.thumbprint}` : ''}`,
  );
  lines.push(
    `now:       ${st.connections.open} connection(s), ${st.connections.unfinished} handshaking, ${st.hostProcesses} host process(es)`,
  );
  lines.push(`outbound:  ${st.outbound.length === 0 ? 'none' : ''}`);
  for (const o of st.outbound)
    lines.push(`  ${o.server}  ${o.state}${o.since ? ` since ${new Date(o.since).toISOString()}` : ''}`);
  lines.push(`sessions:  ${st.sessions.length}`);
  for (const s of st.sessions) {
    lines.push(
      `  ${s.id}  ${s.principal}  ${s.state} since ${s.since}  idle ${duration(s.idleMs)}  from ${s.remotes.join(', ') || s.createdBy}`,
    );
    if (s.hosts.length)
      lines.push(`      hosts: ${s.hosts.map((h) => `${h.product} (pid ${h.pid})`).join(', ')}`);
    if (s.processes.length)
      lines.push(`      processes: ${s.processes.map((p) => `token ${p.token} pid ${p.pid}`).join(', ')}`);
    if (s.jobs.length) lines.push(`      jobs: ${s.jobs.map((j) => `token ${j.token}`).join(', ')}`);
  }
  const rejected = Object.entries(st.rejected);
  lines.push(
    `rejected:  ${rejected.length === 0 ? 'none' : rejected.map(([k, v]) => `${k} ${v}`).join(', ')}${st.replayCacheHits ? `; replayed frames ${st.replayCacheHits}` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      "show what the agent on this machine is doing (through its control socket; run as the agent's user)",
    )
    .option('--config <path>', "the agent's configuration (default: ./InedoAgent.config, then /etc/outpost)")
    .option('--socket <path>', "the control socket (default: the config's ControlSocket)")
    .option('--json', 'print the status as JSON')
    .addHelpText(
      'after',
      `
Examples:
  outpost status --config /etc/outpost/InedoAgent.config      # as the agent's user or root
  outpost status --json | jq '.sessions[] | {id, principal, idleMs}'

Exit code: 0 answered; 1 bad usage or config; 2 no agent answers on the socket.`,
    )
    .action(
      clientAction(async (flags: ControlFlags & { json?: boolean }) => {
        const answer = await askAgent(flags, { command: 'status' });
        if (!answer.ok) throw new CliError(`the agent refused: ${answer.error}`, EXIT.USAGE);
        if (!('status' in answer))
          throw new CliError('the agent sent an answer without a status', EXIT.CONNECTION);
        process.stdout.write(
          flags.json ? `${JSON.stringify(answer.status, null, 2)}\n` : formatStatus(answer.status),
        );
        return EXIT.OK;
      }),
    );
}
