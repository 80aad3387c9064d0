/**
 * `outpost ls HOST:PATH [-r] [--include GLOB…] [--exclude GLOB…] [-l] [--json]`:
 * lists a remote directory (or shows one file), sorted by name. Directories
 * end with `/`. -l adds mode, size and last-write time; --json prints an
 * array of { name, kind, size, mtime, mode }.
 */
import type { Command } from 'commander';
import type { RemoteEntry } from '../client/index.js';
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

function displayName(e: RemoteEntry): string {
  return e.kind === 'directory' ? `${e.name}/` : e.name;
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
    .option('--json', 'print a JSON array of { name, kind, size, mtime, mode }');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ls web01:/srv/app
  outpost ls web01:/var/log -r --include '**/*.log' --exclude 'old/**' -l
  outpost ls web01:/srv/app --json | jq -r '.[] | select(.kind == "file") | .name'

Exit code: 0 listed; 1 bad usage; 2 connection failed; 3 remote error (e.g. NotFound, AccessDenied).`,
  );
  cmd.action(
    clientAction(async (remote: string, flags: LsFlags) => {
      const spec = parseRemote(remote);
      const settings = await connectionSettings(flags);
      const entries = await withClient(spec, settings, async (client) => {
        const stats = await client.stat(spec.path);
        if (stats.kind !== 'directory') {
          const sep = client.agentInfo.directorySeparator || '/';
          const name = spec.path.split(sep).filter(Boolean).pop() ?? spec.path;
          return [{ name, ...stats }];
        }
        return client.list(spec.path, {
          recursive: flags.recursive === true,
          ...(flags.include ? { include: flags.include } : {}),
          ...(flags.exclude ? { exclude: flags.exclude } : {}),
        });
      });
      if (flags.json) {
        const out = entries.map((e) => ({
          name: e.name,
          kind: e.kind,
          size: e.size,
          mtime: e.mtime.toISOString(),
          mode: e.mode,
        }));
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      } else if (flags.long) {
        if (entries.length > 0)
          process.stdout.write(
            `${table(
              entries.map((e) => [
                modeString(e.kind, e.mode),
                String(e.size),
                formatTime(e.mtime),
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
