/**
 * `outpost mkdir HOST:PATH…`: creates remote directories with their parents
 * (an existing directory is fine, like `mkdir -p`).
 */
import type { Command } from 'commander';
import { addConnectionOptions } from './connection.js';
import { clientAction } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { sameHostRemotes } from './hosts.js';

export function registerMkdir(program: Command): void {
  const cmd = program
    .command('mkdir')
    .description('create remote directories (with parents; existing is fine)')
    .argument('<remote...>', 'HOST[:PORT]:PATH (or ALIAS:PATH, @GROUP:PATH) to create (several: same host)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost mkdir web01:/srv/app/releases/42
  outpost mkdir web01:/srv/a web01:/srv/b
  outpost mkdir @web:/srv/app/releases/42          # on every host of the group

Exit code: 0 created (or existed); 1 bad usage; 2 connection failed; 3 remote error (AccessDenied, …).`,
  );
  cmd.action(
    clientAction(async (remotes: string[], flags: TargetFlags) => {
      const { name, paths } = sameHostRemotes(remotes, 'mkdir');
      return runOnHosts({
        names: [name],
        flags,
        command: 'mkdir',
        run: async (client, task) => {
          for (const path of paths) await client.mkdir(path, { signal: task.signal });
          return { ok: true, result: `${paths.length} created`, json: { host: task.label, created: paths } };
        },
      });
    }),
  );
}
