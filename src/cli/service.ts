/**
 * `outpost service install|uninstall|status [--config PATH] [--user NAME] [--name NAME]`:
 * runs the agent as a systemd service (docs/OPERATIONS.md).
 *
 * install: checks the config (it must load), writes /etc/systemd/system/NAME.service
 * atomically (renderUnit in service-unit.ts), gives the state directories to
 * --user, lets that user's group read the config and the TLS files (owner
 * stays; mode 0640), then `systemctl daemon-reload` and `enable --now`.
 * Without systemd running (a container) it says so and prints the unit
 * instead. --print only prints. uninstall: `disable --now`, removes the unit.
 * status: `systemctl status NAME`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { findConfigFile, loadConfig } from '../agent/index.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { writeFileAtomic } from './init.js';
import { renderUnit } from './service-unit.js';

export const UNIT_DIR = '/etc/systemd/system';

interface ServiceFlags {
  config?: string;
  user?: string;
  name?: string;
  print?: boolean;
}

/** The built CLI entry (dist/cli/main.js): beside this file once built, under dist/ when run from source. */
export function mainScript(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return join(here, '..', 'main.js');
  return resolve(here, '..', '..', '..', 'dist', 'cli', 'main.js');
}

/** True when systemd is the running init (what sd_booted() checks). */
export function systemdRunning(): boolean {
  return existsSync('/run/systemd/system');
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : 1
        : 0;
      res({ code, out: `${stdout}${stderr}`.trim() });
    });
  });
}

/** uid and gid of a user, from getent (null when there is no such user). */
async function lookupUser(name: string): Promise<{ uid: number; gid: number } | null> {
  const r = await run('getent', ['passwd', name]);
  if (r.code !== 0) return null;
  const f = r.out.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function serviceName(flags: ServiceFlags): string {
  const name = flags.name ?? 'outpost';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(name))
    throw new UsageError(`--name: "${name}" is not a valid unit name (letters, digits, _ . @ -)`);
  return name;
}

async function install(flags: ServiceFlags): Promise<number> {
  const name = serviceName(flags);
  if (flags.user !== undefined && !/^[a-z_][a-z0-9_-]*\$?$/i.test(flags.user))
    throw new UsageError(`--user: "${flags.user}" is not a user name`);
  const configPath = await findConfigFile(flags.config);
  const config = await loadConfig(configPath);
  const unit = renderUnit(config, {
    node: process.execPath,
    main: mainScript(),
    configPath,
    user: flags.user,
  });
  const err = (line: string) => process.stderr.write(`${line}\n`);
  for (const n of unit.notes) err(`note: ${n}`);
  if (!existsSync(mainScript()))
    err(`note: ${mainScript()} does not exist yet; run \`npm run build\` before starting`);
  if (flags.print || !systemdRunning()) {
    if (!flags.print)
      err(
        `systemd is not running on this machine (a container?): nothing was installed. The unit for ${UNIT_DIR}/${name}.service:`,
      );
    process.stdout.write(unit.text);
    return EXIT.OK;
  }
  if (process.getuid?.() !== 0)
    throw new CliError(`installing a service needs root; run: sudo outpost service install …`, EXIT.USAGE);
  let owner: { uid: number; gid: number } | null = null;
  if (flags.user !== undefined) {
    owner = await lookupUser(flags.user);
    if (!owner)
      throw new CliError(
        `--user: there is no user "${flags.user}"; create one with: useradd --system --no-create-home --shell /usr/sbin/nologin ${flags.user}`,
        EXIT.USAGE,
      );
    for (const dir of unit.writable) {
      await mkdir(dir, { recursive: true, mode: 0o750 });
      await chown(dir, owner.uid, owner.gid);
    }
    // The agent's user reads its config and TLS files through its group; it cannot change them.
    const enc = config.listener.encryption;
    for (const f of [configPath, enc.certificateFile, enc.keyFile]) {
      if (!f) continue;
      const st = await stat(f);
      await chown(f, st.uid, owner.gid);
      await chmod(f, 0o640);
    }
  }
  const unitFile = join(UNIT_DIR, `${name}.service`);
  await writeFileAtomic(unitFile, unit.text, { mode: 0o644, overwrite: true });
  for (const args of [['daemon-reload'], ['enable', '--now', `${name}.service`]]) {
    const r = await run('systemctl', args);
    if (r.code !== 0) throw new CliError(`systemctl ${args.join(' ')} failed: ${r.out}`, EXIT.USAGE);
  }
  err(
    `installed ${unitFile} and started it; check with: systemctl status ${name} and outpost status --config ${configPath}`,
  );
  return EXIT.OK;
}

async function uninstall(flags: ServiceFlags): Promise<number> {
  const name = serviceName(flags);
  const unitFile = join(UNIT_DIR, `${name}.service`);
  if (!systemdRunning())
    throw new CliError('systemd is not running on this machine: there is no service to remove', EXIT.USAGE);
  if (process.getuid?.() !== 0)
    throw new CliError('removing a service needs root; run: sudo outpost service uninstall', EXIT.USAGE);
  await run('systemctl', ['disable', '--now', `${name}.service`]);
  await unlink(unitFile).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await run('systemctl', ['daemon-reload']);
  process.stderr.write(
    `stopped ${name} and removed ${unitFile} (the config and state directories are kept)\n`,
  );
  return EXIT.OK;
}

async function status(flags: ServiceFlags): Promise<number> {
  const name = serviceName(flags);
  if (!systemdRunning())
    throw new CliError(
      'systemd is not running on this machine; use outpost status for the agent itself',
      EXIT.USAGE,
    );
  const r = await run('systemctl', ['status', '--no-pager', `${name}.service`]);
  process.stdout.write(`${r.out}\n`);
  return r.code === 0 ? EXIT.OK : EXIT.REMOTE;
}

export function registerService(program: Command): void {
  const service = program
    .command('service')
    .description('run the agent as a systemd service: install, uninstall, status')
    .addHelpText(
      'after',
      `
Examples:
  outpost service install --config /etc/outpost/InedoAgent.config --user outpost   # as root
  outpost service status
  outpost service uninstall

docs/OPERATIONS.md says what the sandbox confines.`,
    );
  const common = (c: Command) =>
    c
      .option(
        '--config <path>',
        "the agent's configuration (default: ./InedoAgent.config, then /etc/outpost)",
      )
      .option('--name <name>', 'unit name (default: outpost)');
  common(
    service
      .command('install')
      .description(
        'write the systemd unit, enable and start it (prints the unit when systemd is not running)',
      )
      .option(
        '--user <name>',
        "run the agent as this user, inside systemd's sandbox (writes only in AllowedRoots and its state)",
      )
      .option('--print', 'print the unit only'),
  )
    .addHelpText(
      'after',
      `
Examples:
  outpost service install --config /etc/outpost/InedoAgent.config --user outpost   # as root
  outpost service install --user outpost --print > outpost.service`,
    )
    .action(clientAction(install));
  common(service.command('uninstall').description('stop and disable the service, remove its unit')).action(
    clientAction(uninstall),
  );
  common(service.command('status').description('systemctl status of the service')).action(
    clientAction(status),
  );
}
