/**
 * `outpost reload [--config PATH | --socket PATH] [--json]`: the agent re-reads
 * its config (as on SIGHUP). Prints what took effect and which changed
 * settings need a restart; a config with an error is refused whole and the
 * running one stays (exit 1, the error naming the setting).
 */
import type { Command } from 'commander';
import { askAgent, type ControlFlags } from './control-target.js';
import { CliError, clientAction, EXIT } from './errors.js';

export function registerReload(program: Command): void {
  program
    .command('reload')
    .description('make the agent on this machine re-read its configuration without dropping sessions')
    .option('--config <path>', "the agent's configuration (default: ./InedoAgent.config, then /etc/outpost)")
    .option('--socket <path>', "the control socket (default: the config's ControlSocket)")
    .option('--json', 'print the answer as JSON')
    .addHelpText(
      'after',
      `
Examples:
  outpost reload --config /etc/outpost/InedoAgent.config      # or: systemctl reload outpost, kill -HUP PID
  outpost reload --socket /var/lib/outpost/state/control.sock --json

Takes effect for new connections and requests: AllowedAddresses, AllowedRoots, limits, timeouts,
LogLevel, the TLS certificate and key files. Needs a restart: Listener Address, Port, Enabled,
Encryption Mode and Key, MaxMessageSize, LogFile, AuditLogFile, ControlSocket, Metrics, root and cache paths.

Exit code: 0 reloaded; 1 the config has an error (nothing changed); 2 no agent answers.`,
    )
    .action(
      clientAction(async (flags: ControlFlags & { json?: boolean }) => {
        const answer = await askAgent(flags, { command: 'reload' });
        if (flags.json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        if (!answer.ok)
          throw new CliError(`reload refused, the running config stays: ${answer.error}`, EXIT.USAGE);
        if (!('applied' in answer))
          throw new CliError('the agent sent an answer without a reload result', EXIT.CONNECTION);
        if (!flags.json) {
          const out: string[] = ['reloaded'];
          out.push(
            `  in effect now: ${answer.applied.length ? answer.applied.join(', ') : 'nothing changed'}`,
          );
          if (answer.restartRequired.length)
            out.push(`  changed but needs a restart: ${answer.restartRequired.join(', ')}`);
          for (const w of answer.warnings) out.push(`  warning: ${w}`);
          process.stdout.write(`${out.join('\n')}\n`);
        }
        return EXIT.OK;
      }),
    );
}
