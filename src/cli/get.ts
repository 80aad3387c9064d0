/**
 * `outpost get HOST:PATH LOCAL`: downloads a file or a directory tree.
 * When LOCAL is an existing directory (or ends with `/`), the remote entry
 * goes into it under its own name; otherwise LOCAL is the target itself.
 * Like scp, the target's parent directory must exist, unless --parents.
 * On several hosts (`@group`, `--hosts`), LOCAL is a directory and each
 * host's copy goes into its own folder, LOCAL/<host>/<name>. Every file lands in a temp file beside its
 * target, is verified by SHA-256 against the agent's hash, then renamed
 * into place, with the remote mode and last-write time. Progress as for put.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { entryType } from '../client/index.js';
import { addConnectionOptions, looksRemote } from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags, targetsOf } from './fanout.js';
import { formatBytes } from './format.js';
import { splitRemote } from './hosts.js';
import { endsWithSeparator, remoteBasename, skippedNote } from './transfer.js';

interface GetFlags extends TargetFlags {
  quiet?: boolean;
  parents?: boolean;
}

export function registerGet(program: Command): void {
  const cmd = program
    .command('get')
    .description('download a file or directory from an agent; SHA-256 verified, atomic')
    .argument('<remote>', 'HOST[:PORT]:PATH (or ALIAS:PATH, @GROUP:PATH) of a file or directory')
    .argument('<local>', 'where to put it (an existing directory: into it; on several hosts: LOCAL/<host>/)')
    .option('-q, --quiet', 'no progress and no summary line')
    .option('--parents', "create LOCAL's missing parent directories (default: fail, like scp)");
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost get web01:/var/log/app.log .               # ./app.log
  outpost get web01:/srv/app/config ./backup/config  # a whole directory
  outpost get web01:/srv/backup/db.dump /tmp/ -q
  outpost get @web:/var/log/app.log ./logs          # ./logs/web01/app.log, ./logs/web02/app.log, …

Exit code: 0 done; 1 bad usage or local error; 2 connection failed; 3 remote error (NotFound, hash
mismatch, …); 130 Ctrl-C (the file in progress is not committed).`,
  );
  cmd.action(
    clientAction(async (remote: string, local: string, flags: GetFlags) => {
      const { name, path } = splitRemote(remote);
      if (looksRemote(local))
        throw new UsageError(
          `get writes to a local path; "${local}" looks remote (to upload, use outpost put)`,
        );
      const localStat = await stat(local).catch(() => null);
      const { fanout } = await targetsOf([name], flags);
      if (fanout) {
        // One folder per host: LOCAL/<host>/…; LOCAL must be a directory (made with --parents).
        if (localStat && !localStat.isDirectory())
          throw new UsageError(
            `${local} is a file; on several hosts get needs a directory (one folder per host inside)`,
          );
        if (!localStat) {
          if (!flags.parents)
            throw new UsageError(`${local}: no such local directory; create it or pass --parents`);
          await mkdir(local, { recursive: true });
        }
      }
      return runOnHosts({
        names: [name],
        flags,
        command: 'get',
        progress: { label: 'get', quiet: flags.quiet === true },
        run: async (client, task) => {
          const st = await client.stat(path, { signal: task.signal });
          const kind = entryType(st);
          if (kind !== 'file' && kind !== 'directory' && kind !== 'symlink')
            throw new CliError(`${task.label}:${path} is not a file or directory`, EXIT.REMOTE);
          const base = task.fanout ? join(local, safeFolder(task.label)) : local;
          const baseStat = task.fanout ? await stat(base).catch(() => null) : localStat;
          if (task.fanout && !baseStat) await mkdir(base);
          let target = base;
          if (task.fanout || baseStat?.isDirectory() || endsWithSeparator(local)) {
            const name = remoteBasename(path);
            if (name === '' || name === '.' || name === '..')
              throw new UsageError(`"${path}" has no name to create in ${base}; give the target's name`);
            target = join(base, name);
          }
          const targetStat = target === local ? localStat : await stat(target).catch(() => null);
          if (kind === 'directory' && targetStat && !targetStat.isDirectory())
            throw new UsageError(
              `${target} is a file; the remote path is a directory, choose another target`,
            );
          if (kind === 'file' && targetStat?.isDirectory())
            throw new UsageError(`${target} is a directory; the remote path is a file`);
          // Like scp: the target's parent must exist, unless --parents.
          const parent = dirname(resolve(target));
          if (!(await stat(parent).catch(() => null))?.isDirectory()) {
            if (!flags.parents)
              throw new UsageError(`${parent}: no such local directory; create it first or pass --parents`);
            await mkdir(parent, { recursive: true });
          }
          const progress = task.progress;
          const r = await client.download(path, target, {
            signal: task.signal,
            verify: true,
            ...(progress ? { onProgress: (p) => progress.update(p) } : {}),
          });
          if (!task.fanout) progress?.done(r);
          const note = skippedNote('get', r.skipped, `${task.label}:${path}`);
          if (note && !flags.quiet && !task.json) process.stderr.write(note);
          return {
            ok: true,
            result: `${r.files} file${r.files === 1 ? '' : 's'}, ${formatBytes(r.bytes)}`,
            json: { host: task.label, target, files: r.files, bytes: r.bytes, skipped: r.skipped },
          };
        },
      });
    }),
  );
}

/** A host's label as a folder name (`[::1]:4000` → `__1_4000`). */
function safeFolder(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]/g, '_');
}
