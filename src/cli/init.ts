/**
 * `outpost init [--config PATH] [--mode aes|ssl|none] [--address A] [--port N] [--force]`
 *
 * Writes a new agent configuration:
 *   - aes (default): a fresh AES-256 key from the OS's CSPRNG;
 *   - ssl: a self-signed certificate made in-process (EC P-256,
 *     10 years, SANs for this host name, localhost, 127.0.0.1, ::1 and the
 *     listen address), stored next to the config; its SHA-256 thumbprint is
 *     printed for clients to pin;
 *   - none: no encryption (default address 127.0.0.1 then).
 * The file is written atomically (temp file, fsync, link/rename) with mode
 * 0600, and never over an existing one without --force. The key or
 * thumbprint is printed once, with the command to run next.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import {
  CONFIG_FILE_NAME,
  ConfigError,
  type ConfigTemplate,
  loadConfig,
  parseConfig,
  renderConfigXml,
} from '../agent/index.js';
import { DEFAULT_PORT } from '../protocol/index.js';
import {
  type EncryptionMode,
  formatThumbprint,
  makeSelfSignedCertificate,
  normalizeThumbprint,
} from '../transport/index.js';

import { checkKey } from './connection.js';
import { UsageError } from './errors.js';
import { readKeyFile } from './secrets.js';

export const CERT_FILE_NAME = 'outpost-agent.crt';
export const KEY_FILE_NAME = 'outpost-agent.key';

export { UsageError } from './errors.js';

export interface InitOptions {
  configPath?: string | undefined;
  mode?: string | undefined;
  address?: string | undefined;
  port?: string | number | undefined;
  force?: boolean | undefined;
  /** Outbound mode (§8): dial this hub (HOST[:PORT]) instead of listening. */
  outbound?: string | undefined;
  /** --server-key: the key the hub knows this agent by. */
  serverKey?: string | undefined;
  /** --thumbprint: the hub certificate's SHA-256 thumbprint. */
  thumbprint?: string | undefined;
  /** Mode aes: reuse this key (hex, already checked) instead of making a fresh one. */
  keyHex?: string | undefined;
  /** Where to print (default: stdout). */
  out?: (line: string) => void;
}

export interface InitResult {
  configPath: string;
  mode: EncryptionMode;
  address: string;
  port: number;
  keyHex?: string;
  thumbprint?: string;
  certificateFile?: string;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes `data` atomically: a temp file in the same directory, fsync, then
 * rename (overwrite) or link (fails if the target appeared meanwhile).
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  options: { mode: number; overwrite: boolean },
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', options.mode);
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (options.overwrite) {
      await rename(tmp, path);
    } else {
      try {
        await link(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST')
          throw new UsageError(`${path} already exists; pass --force to replace it`);
        throw err;
      }
      await unlink(tmp);
    }
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  try {
    const d = await open(dir, 'r');
    await d.sync().finally(() => d.close());
  } catch {
    // not every OS can fsync a directory
  }
}

function parsePort(value: string | number | undefined): number {
  if (value === undefined) return DEFAULT_PORT;
  const t = String(value);
  if (!/^\d+$/.test(t) || Number(t) > 65535)
    throw new UsageError(`--port: "${t}" is not a port number (0–65535)`);
  return Number(t);
}

function parseMode(value: string | undefined): EncryptionMode {
  const m = (value ?? 'aes').toLowerCase();
  if (m !== 'aes' && m !== 'ssl' && m !== 'none')
    throw new UsageError(`--mode: "${value}" must be aes, ssl or none`);
  return m;
}

/**
 * Makes a self-signed certificate (EC P-256, SHA-256, default 10 years) and
 * its key in-process (src/transport/certs.ts) and writes them to `certFile`
 * (0644) and `keyFile` (0600). Needs no `openssl` binary.
 */
export async function createSelfSignedCertificate(options: {
  certFile: string;
  keyFile: string;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  days?: number;
}): Promise<void> {
  const made = await makeSelfSignedCertificate({
    commonName: options.commonName,
    dnsNames: options.dnsNames,
    ipAddresses: options.ipAddresses,
    ...(options.days !== undefined ? { days: options.days } : {}),
  });
  await writeFile(options.keyFile, made.keyPem, { mode: 0o600 });
  await writeFile(options.certFile, made.certPem, { mode: 0o644 });
}

export async function init(options: InitOptions): Promise<InitResult> {
  if (options.outbound !== undefined) return initOutbound(options);
  if (options.serverKey !== undefined || options.thumbprint !== undefined)
    throw new UsageError('--server-key and --thumbprint go with --outbound HOST (outbound mode)');
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const mode = parseMode(options.mode);
  const port = parsePort(options.port);
  const address = options.address ?? (mode === 'none' ? '127.0.0.1' : '0.0.0.0');
  if (isIP(address) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(address))
    throw new UsageError(`--address: "${address}" is not an IP address or host name`);
  const configPath = resolve(options.configPath ?? CONFIG_FILE_NAME);
  const force = options.force ?? false;
  const dir = dirname(configPath);
  if (!force && (await exists(configPath)))
    throw new UsageError(
      `${configPath} already exists; pass --force to replace it (clients using its key or certificate will need the new one)`,
    );
  await mkdir(dir, { recursive: true });

  const template: ConfigTemplate = { mode, address, port };
  const result: InitResult = { configPath, mode, address, port };
  if (mode === 'aes') {
    result.keyHex = options.keyHex ?? randomBytes(32).toString('hex');
    template.keyHex = result.keyHex;
  } else if (mode === 'ssl') {
    const certFile = join(dir, CERT_FILE_NAME);
    const keyFile = join(dir, KEY_FILE_NAME);
    for (const f of [certFile, keyFile])
      if (!force && (await exists(f)))
        throw new UsageError(`${f} already exists; pass --force to replace it`);
    const host = hostname();
    const ips = ['127.0.0.1', '::1'];
    if (isIP(address) !== 0 && address !== '0.0.0.0' && address !== '::' && !ips.includes(address))
      ips.push(address);
    const dns = [...new Set([host, 'localhost'].filter((d) => /^[A-Za-z0-9.-]+$/.test(d)))];
    if (isIP(address) === 0 && !dns.includes(address)) dns.push(address);
    const made = await makeSelfSignedCertificate({ commonName: host, dnsNames: dns, ipAddresses: ips });
    await writeFileAtomic(keyFile, made.keyPem, { mode: 0o600, overwrite: force });
    await writeFileAtomic(certFile, made.certPem, { mode: 0o644, overwrite: force });
    template.certificateFile = CERT_FILE_NAME;
    template.keyFile = KEY_FILE_NAME;
    result.certificateFile = certFile;
  }
  await writeFileAtomic(configPath, renderConfigXml(template), { mode: 0o600, overwrite: force });

  // Read back what was written: it must load, or init failed.
  const config = await loadConfig(configPath);
  if (config.listener.encryption.thumbprint) result.thumbprint = config.listener.encryption.thumbprint;

  out(`Wrote ${configPath} (mode ${mode}, listening on ${address} port ${port}).`);
  if (mode === 'aes') {
    out('');
    out('AES key (give it to the orchestrator; it is also stored in the config file, keep that private):');
    out(`  ${result.keyHex}`);
  } else if (mode === 'ssl') {
    out(`Certificate: ${result.certificateFile} (key: ${join(dir, KEY_FILE_NAME)}, keep it private)`);
    out('');
    out('SHA-256 thumbprint (orchestrators pin this to trust the agent):');
    out(`  ${formatThumbprint(result.thumbprint ?? '')}`);
  } else {
    out('');
    out(
      'WARNING: mode none: no encryption and no authentication; anyone who can reach the port can run commands.',
    );
  }
  out('');
  out('Next:');
  out(`  outpost serve --config ${configPath}`);
  return result;
}

/**
 * `outpost init --outbound HOST[:PORT] --server-key K [--thumbprint T]`: an
 * agent that dials the hub and does not listen. The config is read back
 * (so a bad host, key or thumbprint fails here, naming the setting).
 */
async function initOutbound(options: InitOptions): Promise<InitResult> {
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  if (options.serverKey === undefined || options.serverKey === '')
    throw new UsageError(
      '--outbound needs --server-key KEY: the key the hub gave this agent (`outpost hub key NAME` on the hub prints it)',
    );
  if (options.thumbprint === undefined)
    process.stderr.write(
      "note: no --thumbprint: the hub's certificate must then be trusted by this machine's CA store\n",
    );
  else if (!normalizeThumbprint(options.thumbprint))
    throw new UsageError(
      '--thumbprint: expected the SHA-256 thumbprint as 64 hex digits (colons allowed), as `outpost hub init` printed it',
    );
  const configPath = resolve(options.configPath ?? CONFIG_FILE_NAME);
  const force = options.force ?? false;
  if (!force && (await exists(configPath)))
    throw new UsageError(`${configPath} already exists; pass --force to replace it`);
  await mkdir(dirname(configPath), { recursive: true });
  const xml = renderConfigXml({
    mode: 'none',
    address: '127.0.0.1',
    listenerEnabled: false,
    servers: [
      {
        host: options.outbound!,
        key: options.serverKey,
        ...(options.thumbprint !== undefined ? { thumbprint: options.thumbprint } : {}),
      },
    ],
  });
  // Check before writing; name the option rather than the element it became.
  await parseConfig(xml, configPath).catch((err: unknown) => {
    if (!(err instanceof ConfigError)) throw err;
    const flag = /@Host$/.test(err.element)
      ? '--outbound'
      : /@Key$/.test(err.element)
        ? '--server-key'
        : null;
    if (!flag) throw err;
    throw new UsageError(`${flag}: ${err.message.slice(err.element.length + 2)}`);
  });
  await writeFileAtomic(configPath, xml, { mode: 0o600, overwrite: force });
  const config = await loadConfig(configPath);
  const server = config.connections.servers[0]!;
  out(`Wrote ${configPath} (outbound: dials ${server.label}; no listener).`);
  out('');
  out('Next:');
  out(`  outpost serve --config ${configPath}`);
  return { configPath, mode: 'none', address: '', port: 0 };
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('write a new agent configuration with a fresh AES key (or a self-signed TLS certificate)')
    .option('--config <path>', `where to write it (default: ./${CONFIG_FILE_NAME})`)
    .option('--mode <mode>', 'encryption: aes, ssl or none', 'aes')
    .option('--address <address>', 'address to listen on (default: 0.0.0.0; 127.0.0.1 for mode none)')
    .option('--port <port>', 'TCP port to listen on', String(DEFAULT_PORT))
    .option('--force', 'overwrite an existing configuration (and certificate)')
    .option(
      '--outbound <host[:port]>',
      'outbound mode: dial this hub instead of listening (see `outpost hub`)',
    )
    .option(
      '--server-key <key>',
      'with --outbound: the key the hub knows this agent by (`outpost hub key NAME`)',
    )
    .option(
      '--thumbprint <hex>',
      "with --outbound: the hub certificate's SHA-256 thumbprint (`outpost hub init`)",
    )
    .option('--key <hex>', 'mode aes: reuse this fleet key (32/48/64 hex digits) instead of a fresh one')
    .option('--key-file <file>', 'mode aes: reuse the key in FILE (it must not be readable by others)')
    .action(
      async (opts: {
        config?: string;
        mode?: string;
        address?: string;
        port?: string;
        force?: boolean;
        outbound?: string;
        serverKey?: string;
        thumbprint?: string;
        key?: string;
        keyFile?: string;
      }) => {
        await init({
          configPath: opts.config,
          mode: opts.mode,
          address: opts.address,
          port: opts.port,
          force: opts.force,
          outbound: opts.outbound,
          serverKey: opts.serverKey,
          thumbprint: opts.thumbprint,
          keyHex: await initKey(opts),
        });
      },
    );
}

/** `--key HEX` / `--key-file FILE` of init: checked like a client's key; only with mode aes. */
async function initKey(opts: { mode?: string; key?: string; keyFile?: string }): Promise<string | undefined> {
  if (opts.key === undefined && opts.keyFile === undefined) return undefined;
  if (opts.key !== undefined && opts.keyFile !== undefined)
    throw new UsageError('give --key or --key-file, not both');
  if ((opts.mode ?? 'aes').toLowerCase() !== 'aes')
    throw new UsageError(`--key and --key-file apply to mode aes only, not ${opts.mode}`);
  const text = opts.key ?? (await readKeyFile(opts.keyFile!, '--key-file'));
  return checkKey(text, opts.key !== undefined ? '--key' : `key file ${opts.keyFile}`).toLowerCase();
}
