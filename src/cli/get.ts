/**
 * `outpost get HOST:PATH LOCAL`: downloads a file or a directory tree.
 * When LOCAL is an existing directory (or ends with `/`), the remote entry
 * goes into it under its own name; otherwise LOCAL is the target itself
 * (parents are created). Every file lands in a temp file beside its
 * target, is verified by SHA-256 against the agent's hash, then renamed
 * into place, with the remote mode and last-write time. Progress as for put.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { entryType } from '../client/index.js';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  connectionSettings,
  endSession,
  looksRemote,
  parseRemote,
} from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { interruptController } from './io.js';
import { createProgress } from './progress.js';
import { endsWithSeparator, remoteBasename, skippedNote } from './transfer.js';

interface GetFlags extends ConnectionFlags {
  quiet?: boolean;
}

export function registerGet(program: Command): void {
  const cmd = program
    .command('get')
    .description('download a file or directory from an agent; SHA-256 verified, atomic')
    .argument('<remote>', 'HOST[:PORT]:PATH of a file or directory')
    .argument('<local>', 'where to put it (an existing directory: into it)')
    .option('-q, --quiet', 'no progress and no summary line');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost get web01:/var/log/app.log .               # ./app.log
  outpost get web01:/srv/app/config ./backup/config  # a whole directory
  outpost get web01:/srv/backup/db.dump /tmp/ -q

Exit code: 0 done; 1 bad usage or local error; 2 connection failed; 3 remote error (NotFound, hash
mismatch, …); 130 Ctrl-C (the file in progress is not committed).`,
  );
  cmd.action(
    clientAction(async (remote: string, local: string, flags: GetFlags) => {
      const spec = parseRemote(remote);
      if (looksRemote(local))
        throw new UsageError(
          `get writes to a local path; "${local}" looks remote (to upload, use outpost put)`,
        );
      const settings = await connectionSettings(flags);
      const localStat = await stat(local).catch(() => null);
      const stop = interruptController();
      const progress = createProgress({ label: 'get', quiet: flags.quiet === true });
      try {
        const client = await connect(spec, settings, stop.signal);
        try {
          const st = await client.stat(spec.path, { signal: stop.signal });
          const kind = entryType(st);
          if (kind !== 'file' && kind !== 'directory' && kind !== 'symlink')
            throw new CliError(`${spec.label}:${spec.path} is not a file or directory`, EXIT.REMOTE);
          let target = local;
          if (localStat?.isDirectory() || endsWithSeparator(local)) {
            const name = remoteBasename(spec.path);
            if (name === '' || name === '.' || name === '..')
              throw new UsageError(
                `"${spec.path}" has no name to create in ${local}; give the target's name`,
              );
            target = join(local, name);
          }
          const targetStat = target === local ? localStat : await stat(target).catch(() => null);
          if (kind === 'directory' && targetStat && !targetStat.isDirectory())
            throw new UsageError(
              `${target} is a file; the remote path is a directory, choose another target`,
            );
          if (kind === 'file' && targetStat?.isDirectory())
            throw new UsageError(`${target} is a directory; the remote path is a file`);
          const r = await client.download(spec.path, target, {
            signal: stop.signal,
            verify: true,
            onProgress: (p) => progress.update(p),
          });
          progress.done(r);
          const note = skippedNote('get', r.skipped, `${spec.label}:${spec.path}`);
          if (note && !flags.quiet) process.stderr.write(note);
        } finally {
          await endSession(client);
        }
      } catch (err) {
        progress.clear();
        if (stop.interrupted()) {
          process.stderr.write('outpost: interrupted; files in progress were not committed\n');
          return EXIT.INTERRUPTED;
        }
        throw err;
      } finally {
        stop.dispose();
      }
      return EXIT.OK;
    }),
  );
}
