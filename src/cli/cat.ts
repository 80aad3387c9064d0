/**
 * `outpost cat HOST:PATH…`: writes remote files to stdout, streamed (a
 * window of ReadFile requests; never the whole file in memory). When the
 * reader of stdout goes away (`| head`), it stops quietly.
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
import { interruptController, pump } from './io.js';

export function registerCat(program: Command): void {
  const cmd = program
    .command('cat')
    .description('write remote files to stdout (streamed)')
    .argument('<remote...>', 'HOST[:PORT]:PATH of a file (several: same host, one after the other)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost cat web01:/var/log/app.log | grep ERROR
  outpost cat web01:/etc/hostname web01:/etc/os-release
  outpost cat web01:/srv/backup/db.dump > db.dump

Exit code: 0 done; 1 bad usage; 2 connection failed; 3 remote error (NotFound, IsDirectory, …).`,
  );
  cmd.action(
    clientAction(async (remotes: string[], flags: ConnectionFlags) => {
      const specs = remotes.map(parseRemote);
      const first = specs[0]!;
      const other = specs.find((s) => s.host !== first.host || s.port !== first.port);
      if (other)
        throw new UsageError(
          `cat reads from one agent at a time; ${other.label} differs from ${first.label}`,
        );
      const settings = await connectionSettings(flags);
      const stop = interruptController();
      try {
        await withClient(
          first,
          settings,
          async (client) => {
            for (const spec of specs) {
              const rs = client.createReadStream(spec.path, { signal: stop.signal });
              try {
                await pump(rs, process.stdout);
              } catch (err) {
                if ((err as NodeJS.ErrnoException).code === 'EPIPE') return;
                throw err;
              } finally {
                rs.destroy();
              }
            }
          },
          stop.signal,
        );
      } finally {
        stop.dispose();
      }
      return 0;
    }),
  );
}
