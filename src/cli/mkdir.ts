/**
 * `outpost mkdir HOST:PATH…`: creates remote directories with their parents
 * (an existing directory is fine, like `mkdir -p`).
 */
import type { Command } from 'commander';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connectionSettings,
  parseRemote,
  withClient,
} from './connection.js';
import { clientAction, UsageError } from './errors.js';

export function registerMkdir(program: Command): void {
  const cmd = program
    .command('mkdir')
    .description('create remote directories (with parents; existing is fine)')
    .argument('<remote...>', 'HOST[:PORT]:PATH to create (several: same host)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost mkdir web01:/srv/app/releases/42
  outpost mkdir web01:/srv/a web01:/srv/b

Exit code: 0 created (or existed); 1 bad usage; 2 connection failed; 3 remote error (AccessDenied, …).`,
  );
  cmd.action(
    clientAction(async (remotes: string[], flags: ConnectionFlags) => {
      const specs = remotes.map(parseRemote);
      const first = specs[0]!;
      const other = specs.find((s) => s.host !== first.host || s.port !== first.port);
      if (other)
        throw new UsageError(
          `mkdir works on one agent at a time; ${other.label} differs from ${first.label}`,
        );
      const settings = await connectionSettings(flags);
      await withClient(first, settings, async (client) => {
        for (const spec of specs) {
          await client.mkdir(spec.path);
        }
      });
      return 0;
    }),
  );
}
