/**
 * `outpost sync LOCAL HOST:PATH [--delete] [--dry-run] [--checksum]`: makes
 * the remote directory match the local one, rsync-style (agent.sync): on an
 * Outpost agent one manifest request describes the remote tree and the
 * changes go as one archive stream; on another agent the contract's own
 * commands are used. Prints what it did — `sync: sent 3 files (1.2 KiB),
 * 9,997 unchanged, deleted 1 in 84 ms` — and, with --dry-run (or -v), each
 * file it sends or deletes (`send a/b.txt`, `delete old.txt`). Progress on
 * a terminal, as put.
 */
import type { Command } from 'commander';
import type { TransferProgress } from '../client/index.js';
import { addConnectionOptions } from './connection.js';
import { clientAction, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { formatBytes, formatCount, formatDuration } from './format.js';
import { splitRemote } from './hosts.js';

interface SyncFlags extends TargetFlags {
  delete?: boolean;
  dryRun?: boolean;
  checksum?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

export function registerSync(program: Command): void {
  const cmd = program
    .command('sync')
    .description('make a remote directory match a local one: sends only what changed (rsync-like)')
    .argument('<local>', 'local directory')
    .argument('<remote>', 'HOST[:PORT]:PATH of the remote directory (created when missing)')
    .option('--delete', 'delete remote entries that do not exist locally')
    .option('-n, --dry-run', 'show what would be sent and deleted; change nothing')
    .option('-c, --checksum', 'compare SHA-256 (hashed on the agent) when sizes match, not last-write times')
    .option('-v, --verbose', 'list every file sent or deleted')
    .option('-q, --quiet', 'no progress and no summary');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost sync ./dist web01:/srv/app               # send new and changed files
  outpost sync ./dist web01:/srv/app --delete -n   # what would change, deletions included
  outpost sync ./dist @web:/srv/app --parallel 8   # every host of a group (exit 4 if any failed)

A file is unchanged when its size and last-write time (or, with -c, SHA-256) match.
Exit code: 0 done; 1 bad usage or unreadable local directory; 2 connection failed; 3 remote error; 130 Ctrl-C.`,
  );
  cmd.action(
    clientAction(async (local: string, remote: string, flags: SyncFlags) => {
      const { name, path } = splitRemote(remote);
      if (path === '')
        throw new UsageError('sync needs a remote directory: outpost sync ./dist web01:/srv/app');
      // One runner for one host or many (@group, --hosts): each host is synced on its own.
      return runOnHosts({
        names: [name],
        flags,
        command: 'sync',
        progress: { label: 'sync', quiet: flags.quiet === true || flags.dryRun === true },
        run: async (client, task) => {
          const t0 = performance.now();
          const r = await client.sync(local, path, {
            signal: task.signal,
            delete: flags.delete === true,
            dryRun: flags.dryRun === true,
            compare: flags.checksum ? 'hash' : 'mtime',
            ...(task.progress ? { onProgress: (p: TransferProgress) => task.progress!.update(p) } : {}),
          });
          const lines: string[] = [];
          if (flags.dryRun || flags.verbose) {
            for (const f of r.uploaded) lines.push(`${r.dryRun ? 'would send' : 'sent'} ${f}`);
            for (const f of r.deleted) lines.push(`${r.dryRun ? 'would delete' : 'deleted'} ${f}`);
          }
          const verb = r.dryRun ? 'would send' : 'sent';
          const del =
            r.deleted.length > 0 || flags.delete
              ? `, ${r.dryRun ? 'would delete' : 'deleted'} ${r.deleted.length}`
              : '';
          const summary = `${verb} ${r.uploaded.length} file${r.uploaded.length === 1 ? '' : 's'} (${formatBytes(r.bytes)}), ${formatCount(r.unchanged)} unchanged${del}`;
          if (!flags.quiet)
            lines.push(
              `sync: ${summary} in ${formatDuration(performance.now() - t0)}${r.method === 'files' ? ' (file by file: the agent has no outpost jobs)' : ''}`,
            );
          if (lines.length > 0) await task.print(`${lines.join('\n')}\n`);
          return {
            ok: true,
            result: summary,
            json: {
              host: task.label,
              dryRun: r.dryRun,
              uploaded: r.uploaded,
              deleted: r.deleted,
              unchanged: r.unchanged,
              bytes: r.bytes,
              method: r.method,
            },
          };
        },
      });
    }),
  );
}
