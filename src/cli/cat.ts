/**
 * `outpost cat HOST:PATH…`: writes remote files to stdout, streamed (a
 * window of ReadFile requests; never the whole file in memory). When the
 * reader of stdout goes away (`| head`), it stops quietly.
 */
import type { Command } from 'commander';
import { addConnectionOptions } from './connection.js';
import { clientAction } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { sameHostRemotes } from './hosts.js';
import { pump } from './io.js';

export function registerCat(program: Command): void {
  const cmd = program
    .command('cat')
    .description('write remote files to stdout (streamed)')
    .argument(
      '<remote...>',
      'HOST[:PORT]:PATH (or ALIAS:PATH, @GROUP:PATH) of a file (several: same host, one after the other)',
    );
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost cat web01:/var/log/app.log | grep ERROR
  outpost cat web01:/etc/hostname web01:/etc/os-release
  outpost cat web01:/srv/backup/db.dump > db.dump
  outpost cat @web:/etc/hostname                   # every host of the group, lines prefixed "web01: …"
  outpost cat web01:/etc/hostname --json           # JSON Lines: {"type":"output","host",…,"text"}

Exit code: 0 done; 1 bad usage; 2 connection failed; 3 remote error (NotFound, IsDirectory, …).`,
  );
  cmd.action(
    clientAction(async (remotes: string[], flags: TargetFlags) => {
      const { name, paths } = sameHostRemotes(remotes, 'cat');
      return runOnHosts({
        names: [name],
        flags,
        command: 'cat',
        run: async (client, task) => {
          for (const path of paths) {
            const rs = client.createReadStream(path, { signal: task.signal });
            try {
              await (task.fanout || task.json ? task.stdout(rs) : pump(rs, process.stdout));
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'EPIPE') break;
              throw err;
            } finally {
              rs.destroy();
            }
          }
          return { ok: true, result: `${paths.length} file${paths.length === 1 ? '' : 's'}` };
        },
      });
    }),
  );
}
