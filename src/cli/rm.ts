/**
 * `outpost rm HOST:PATH… [-r] [-f]`: deletes remote files; directories need
 * -r (deleted with their contents). A missing path is an error (NotFound,
 * exit 3) unless -f.
 */
import type { Command } from 'commander';
import { entryType, isRemoteError } from '../client/index.js';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connectionSettings,
  parseRemote,
  withClient,
} from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';

export function registerRm(program: Command): void {
  const cmd = program
    .command('rm')
    .description('delete remote files (and directories with -r)')
    .argument('<remote...>', 'HOST[:PORT]:PATH to delete (several: same host)')
    .option('-r, --recursive', 'delete directories with their contents')
    .option('-f, --force', 'a missing path is not an error');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost rm web01:/tmp/upload.tar
  outpost rm -r web01:/srv/app/releases/41

Exit code: 0 deleted; 1 bad usage (a directory without -r); 2 connection failed;
3 remote error (NotFound without -f, AccessDenied, …).`,
  );
  cmd.action(
    clientAction(
      async (remotes: string[], flags: ConnectionFlags & { recursive?: boolean; force?: boolean }) => {
        const specs = remotes.map(parseRemote);
        const first = specs[0]!;
        const other = specs.find((s) => s.host !== first.host || s.port !== first.port);
        if (other)
          throw new UsageError(`rm works on one agent at a time; ${other.label} differs from ${first.label}`);
        const settings = await connectionSettings(flags);
        await withClient(first, settings, async (client) => {
          for (const spec of specs) {
            let kind: string;
            try {
              kind = entryType(await client.stat(spec.path));
            } catch (err) {
              if (flags.force && isRemoteError(err, 'NotFound')) continue;
              throw err;
            }
            if (kind === 'directory') {
              if (!flags.recursive)
                throw new CliError(
                  `${first.label}:${spec.path} is a directory; pass -r to delete it with its contents`,
                  EXIT.USAGE,
                );
              await client.rmdir(spec.path, { recursive: true });
            } else {
              await client.rm(spec.path);
            }
          }
        });
        return 0;
      },
    ),
  );
}
