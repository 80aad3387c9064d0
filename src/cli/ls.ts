/**
 * `outpost ls HOST:PATH [-r] [--include GLOB…] [--exclude GLOB…] [-l] [--json]`:
 * lists a remote directory (or shows one file), sorted by name. Directories
 * end with `/`. Names are relative to PATH, derived from each entry's full
 * path. -l adds type and permissions (from the entry's POSIX mode), size and
 * last-write time; --json prints an array of
 * { name, fullPath, type, isDirectory, size, mtime, mode }.
 */
import type { Command } from 'commander';
import { entryName, entryType, type RemoteEntry, relativeName } from '../client/index.js';
import { addConnectionOptions, collect } from './connection.js';
import { clientAction } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { formatTime, modeString, table } from './format.js';
import { splitRemote } from './hosts.js';

interface LsFlags extends TargetFlags {
  recursive?: boolean;
  include?: string[];
  exclude?: string[];
  long?: boolean;
}

interface Listed extends RemoteEntry {
  name: string;
}

function displayName(e: Listed): string {
  return entryType(e) === 'directory' ? `${e.name}/` : e.name;
}

export function registerLs(program: Command): void {
  const cmd = program
    .command('ls')
    .description('list a remote directory')
    .argument('<remote>', 'HOST[:PORT]:PATH (or ALIAS:PATH, @GROUP:PATH) of a directory (or a file)')
    .option('-r, --recursive', 'list subdirectories too (names relative to PATH)')
    .option('--include <glob>', 'only names matching GLOB, e.g. "**/*.log" (repeatable)', collect)
    .option('--exclude <glob>', 'leave out names matching GLOB (repeatable; wins over --include)', collect)
    .option('-l, --long', 'show mode, size and last-write time');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ls web01:/srv/app
  outpost ls web01:/var/log -r --include '**/*.log' --exclude 'old/**' -l
  outpost ls web01:/srv/app --json | jq -r '.[] | select(.type == "file") | .name'
  outpost ls @web:/srv/app/releases            # every host of the group, lines prefixed
--json prints an array of { name, fullPath, type, isDirectory, size, mtime, mode }.

Exit code: 0 listed; 1 bad usage; 2 connection failed; 3 remote error (e.g. NotFound, AccessDenied).`,
  );
  cmd.action(
    clientAction(async (remote: string, flags: LsFlags) => {
      const { name, path } = splitRemote(remote);
      return runOnHosts({
        names: [name],
        flags,
        command: 'ls',
        run: async (client, task) => {
          const stats = await client.stat(path, { signal: task.signal });
          let entries: Listed[];
          if (entryType(stats) !== 'directory') entries = [{ ...stats, name: entryName(stats) || path }];
          else {
            const listed = await client.list(path, {
              recursive: flags.recursive === true,
              signal: task.signal,
              ...(flags.include ? { include: flags.include } : {}),
              ...(flags.exclude ? { exclude: flags.exclude } : {}),
            });
            // The root's full path (from stat) names each entry relative to PATH.
            entries = listed
              .map((e) => ({ ...e, name: relativeName(stats.fullPath, e.fullPath) ?? entryName(e) }))
              .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
          }
          const json = entries.map((e) => ({
            name: e.name,
            fullPath: e.fullPath,
            type: entryType(e),
            isDirectory: e.isDirectory,
            size: e.size,
            mtime: e.lastWriteUtc.toISOString(),
            mode: e.mode,
          }));
          if (flags.long) {
            if (entries.length > 0)
              await task.print(
                `${table(
                  entries.map((e) => [
                    modeString(entryType(e), e.mode),
                    String(e.size),
                    formatTime(e.lastWriteUtc),
                    displayName(e),
                  ]),
                )}\n`,
              );
          } else if (entries.length > 0) await task.print(entries.map((e) => `${displayName(e)}\n`).join(''));
          return { ok: true, result: `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`, json };
        },
      });
    }),
  );
}
