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
import {
  addConnectionOptions,
  type ConnectionFlags,
  collect,
  connectionSettings,
  parseRemote,
  withClient,
} from './connection.js';
import { clientAction } from './errors.js';
import { formatTime, modeString, table } from './format.js';

interface LsFlags extends ConnectionFlags {
  recursive?: boolean;
  include?: string[];
  exclude?: string[];
  long?: boolean;
  json?: boolean;
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
    .argument('<remote>', 'HOST[:PORT]:PATH of a directory (or a file)')
    .option('-r, --recursive', 'list subdirectories too (names relative to PATH)')
    .option('--include <glob>', 'only names matching GLOB, e.g. "**/*.log" (repeatable)', collect)
    .option('--exclude <glob>', 'leave out names matching GLOB (repeatable; wins over --include)', collect)
    .option('-l, --long', 'show mode, size and last-write time')
    .option('--json', 'print a JSON array of { name, fullPath, type, isDirectory, size, mtime, mode }');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ls web01:/srv/app
  outpost ls web01:/var/log -r --include '**/*.log' --exclude 'old/**' -l
  outpost ls web01:/srv/app --json | jq -r '.[] | select(.type == "file") | .name'

Exit code: 0 listed; 1 bad usage; 2 connection failed; 3 remote error (e.g. NotFound, AccessDenied).`,
  );
  cmd.action(
    clientAction(async (remote: string, flags: LsFlags) => {
      const spec = parseRemote(remote);
      const settings = await connectionSettings(flags);
      const entries = await withClient(spec, settings, async (client): Promise<Listed[]> => {
        const stats = await client.stat(spec.path);
        if (entryType(stats) !== 'directory') return [{ ...stats, name: entryName(stats) || spec.path }];
        const listed = await client.list(spec.path, {
          recursive: flags.recursive === true,
          ...(flags.include ? { include: flags.include } : {}),
          ...(flags.exclude ? { exclude: flags.exclude } : {}),
        });
        // The root's full path (from stat) names each entry relative to PATH.
        return listed
          .map((e) => ({ ...e, name: relativeName(stats.fullPath, e.fullPath) ?? entryName(e) }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      });
      if (flags.json) {
        const out = entries.map((e) => ({
          name: e.name,
          fullPath: e.fullPath,
          type: entryType(e),
          isDirectory: e.isDirectory,
          size: e.size,
          mtime: e.lastWriteUtc.toISOString(),
          mode: e.mode,
        }));
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else if (flags.long) {
        if (entries.length > 0)
          process.stdout.write(
            `${table(
              entries.map((e) => [
                modeString(entryType(e), e.mode),
                String(e.size),
                formatTime(e.lastWriteUtc),
                displayName(e),
              ]),
            )}\n`,
          );
      } else {
        for (const e of entries) process.stdout.write(`${displayName(e)}\n`);
      }
      return 0;
    }),
  );
}
