/**
 * `outpost rm HOST:PATH… [-r] [-f]`: deletes remote files; directories need
 * -r (deleted with their contents). A missing path is an error (NotFound,
 * exit 3) unless -f.
 */
import type { Command } from 'commander';
import { entryType, isRemoteError } from '../client/index.js';
import { addConnectionOptions } from './connection.js';
import { CliError, clientAction, EXIT } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { sameHostRemotes } from './hosts.js';

interface RmFlags extends TargetFlags {
  recursive?: boolean;
  force?: boolean;
}

export function registerRm(program: Command): void {
  const cmd = program
    .command('rm')
    .description('delete remote files (and directories with -r)')
    .argument('<remote...>', 'HOST[:PORT]:PATH (or ALIAS:PATH, @GROUP:PATH) to delete (several: same host)')
    .option('-r, --recursive', 'delete directories with their contents')
    .option('-f, --force', 'a missing path is not an error');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost rm web01:/tmp/upload.tar
  outpost rm -r web01:/srv/app/releases/41
  outpost rm -r @web:/srv/app/releases/41        # on every host of the group

Exit code: 0 deleted; 1 bad usage (a directory without -r); 2 connection failed;
3 remote error (NotFound without -f, AccessDenied, …).`,
  );
  cmd.action(
    clientAction(async (remotes: string[], flags: RmFlags) => {
      const { name, paths } = sameHostRemotes(remotes, 'rm');
      return runOnHosts({
        names: [name],
        flags,
        command: 'rm',
        run: async (client, task) => {
          let deleted = 0;
          for (const path of paths) {
            let kind: string;
            try {
              kind = entryType(await client.stat(path, { signal: task.signal }));
            } catch (err) {
              if (flags.force && isRemoteError(err, 'NotFound')) continue;
              throw err;
            }
            if (kind === 'directory') {
              if (!flags.recursive)
                throw new CliError(
                  `${task.label}:${path} is a directory; pass -r to delete it with its contents`,
                  EXIT.USAGE,
                );
              await client.rmdir(path, { recursive: true, signal: task.signal });
            } else {
              await client.rm(path, { signal: task.signal });
            }
            deleted++;
          }
          return { ok: true, result: `${deleted} deleted`, json: { host: task.label, deleted } };
        },
      });
    }),
  );
}
