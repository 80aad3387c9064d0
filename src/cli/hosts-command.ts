/**
 * `outpost hosts add NAME ADDR[:PORT] [--port N] [--mode M] [--key HEX | --key-file F] [--thumbprint T]`
 * appends an alias to the hosts file (created 0600 in a 0700 directory;
 * the rest of the file, comments included, is kept as it was);
 * `outpost hosts list [--json] [--names]` shows the aliases and groups.
 * The format is in hosts.ts and docs/CLI.md.
 */
import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { stringify } from 'smol-toml';
import { checkKey, parseTarget } from './connection.js';
import { clientAction, UsageError } from './errors.js';
import { table } from './format.js';
import { ensureConfigDir, loadHostsConfig, parseHostsConfig, parsePortFlag } from './hosts.js';
import { writeFileAtomic } from './init.js';
import { checkPrivate } from './secrets.js';

interface AddFlags {
  config?: string;
  port?: string;
  mode?: string;
  key?: string;
  keyFile?: string;
  thumbprint?: string;
  force?: boolean;
}

/** The TOML block of one alias. */
export function aliasBlock(name: string, address: string, flags: AddFlags): string {
  const entry: Record<string, unknown> = { address };
  const port = parsePortFlag(flags.port);
  if (port !== undefined) entry.port = port;
  if (flags.mode !== undefined) entry.mode = flags.mode.toLowerCase();
  if (flags.key !== undefined) entry.key = checkKey(flags.key, '--key');
  if (flags.keyFile !== undefined) entry.key_file = flags.keyFile;
  if (flags.thumbprint !== undefined) entry.thumbprint = flags.thumbprint;
  return stringify({ hosts: { [name]: entry } });
}

async function addHost(name: string, address: string, flags: AddFlags): Promise<number> {
  if (flags.key !== undefined && flags.keyFile !== undefined)
    throw new UsageError('give --key or --key-file, not both');
  if (flags.mode !== undefined && !/^(none|ssl|aes)$/i.test(flags.mode))
    throw new UsageError(`--mode: "${flags.mode}" must be none, ssl or aes`);
  parseTarget(address);
  const config = await loadHostsConfig(flags.config);
  if (config.hosts.has(name))
    throw new UsageError(`${config.file} already has [hosts.${name}]; edit it there or choose another name`);
  const block = aliasBlock(name, address, flags);
  const before = config.exists ? await readFile(config.file, 'utf8') : '';
  const text = `${before}${before === '' || before.endsWith('\n') ? '' : '\n'}${before ? '\n' : ''}${block}`;
  // What we write must read back, with the new alias in it.
  const check = parseHostsConfig(text, config.file);
  if (!check.hosts.has(name)) throw new UsageError(`${name}: the alias could not be added to ${config.file}`);
  if (flags.key !== undefined && config.exists)
    await checkPrivate(config.file, 'the hosts file (it will hold a key)');
  await ensureConfigDir(config.file);
  const mode = config.exists ? (await stat(config.file)).mode & 0o777 : 0o600;
  await writeFileAtomic(config.file, text, { mode, overwrite: true });
  process.stdout.write(`added ${name} (${address}) to ${config.file}\n`);
  return 0;
}

async function listHosts(flags: { config?: string; json?: boolean; names?: boolean }): Promise<number> {
  const config = await loadHostsConfig(flags.config);
  if (flags.names) {
    const names = [...config.hosts.keys(), ...[...config.groups.keys()].map((g) => `@${g}`)];
    if (names.length) process.stdout.write(`${names.join('\n')}\n`);
    return 0;
  }
  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          file: config.file,
          hosts: [...config.hosts.values()].map((h) => ({
            name: h.name,
            address: h.address,
            port: h.port ?? null,
            mode: h.flags.mode ?? null,
            key:
              h.flags.key !== undefined
                ? 'set'
                : h.flags.keyFile !== undefined
                  ? `file ${h.flags.keyFile}`
                  : null,
            thumbprint: h.flags.thumbprint ?? null,
          })),
          groups: Object.fromEntries(config.groups),
        },
        null,
        2,
      )}\n`,
    );
    return 0;
  }
  if (!config.exists) {
    process.stdout.write(`no hosts file at ${config.file}; add a host with: outpost hosts add NAME ADDR\n`);
    return 0;
  }
  const rows = [
    ['NAME', 'ADDRESS', 'MODE', 'KEY'],
    ...[...config.hosts.values()].map((h) => [
      h.name,
      h.port !== undefined ? `${h.address}:${h.port}` : h.address,
      h.flags.mode ?? (h.flags.key || h.flags.keyFile ? 'aes' : h.flags.thumbprint ? 'ssl' : '-'),
      // Never print a key: only where it comes from.
      h.flags.key !== undefined ? '(in file)' : (h.flags.keyFile ?? '-'),
    ]),
  ];
  let out = `${config.file}\n${table(rows)}\n`;
  if (config.groups.size)
    out += `\n${table([['GROUP', 'MEMBERS'], ...[...config.groups].map(([g, m]) => [`@${g}`, m.join(' ')])])}\n`;
  process.stdout.write(out);
  return 0;
}

export function registerHosts(program: Command): void {
  const hosts = program
    .command('hosts')
    .description('the client hosts file: aliases and groups (~/.config/outpost/hosts.toml)')
    .addHelpText(
      'after',
      `
Examples:
  outpost hosts add web01 10.0.0.5 --key-file ~/.config/outpost/fleet.key
  outpost hosts list
The format (aliases, [groups]) is in docs/CLI.md, "Hosts file".`,
    );
  hosts
    .command('add')
    .description('add an alias to the hosts file')
    .argument('<name>', 'the alias (letters, digits, "_", "-", ".")')
    .argument('<address>', 'HOST or HOST:PORT of the agent')
    .option('-p, --port <port>', 'its port (default 46336)')
    .option('--mode <mode>', 'none, ssl or aes')
    .option('--key <hex>', 'its AES key (stored in the file; the file is kept private)')
    .option('--key-file <file>', 'a private file that holds its AES key')
    .option('--thumbprint <hex>', "mode ssl: the agent certificate's SHA-256 thumbprint")
    .option('--config <file>', 'hosts file (default: $OUTPOST_CONFIG, else ~/.config/outpost/hosts.toml)')
    .addHelpText(
      'after',
      `
Examples:
  outpost hosts add web01 10.0.0.5 --key-file ~/.config/outpost/fleet.key
  outpost hosts add db01 10.0.0.9:46400 --mode ssl --thumbprint AB:CD:…
Groups are written by hand under [groups] (docs/CLI.md): web = ["web01", "web02"].`,
    )
    .action(
      clientAction(async (name: string, address: string, flags: AddFlags) => addHost(name, address, flags)),
    );
  hosts
    .command('list')
    .description('list the aliases and groups (never the keys)')
    .option('--json', 'print one JSON object')
    .option('--names', 'only the names, one per line (aliases, then @groups; for shell completion)')
    .option('--config <file>', 'hosts file (default: $OUTPOST_CONFIG, else ~/.config/outpost/hosts.toml)')
    .addHelpText('after', '\nExamples:\n  outpost hosts list\n  outpost hosts list --json | jq .groups')
    .action(
      clientAction(async (flags: { config?: string; json?: boolean; names?: boolean }) => listHosts(flags)),
    );
}
