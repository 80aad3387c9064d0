/**
 * What every client command shares: the connection options, parsing of
 * `HOST[:PORT]` and `HOST[:PORT]:PATH`, and connecting.
 *
 *   --key HEX          AES key (32/48/64 hex digits); default $OUTPOST_KEY
 *   --key-file FILE    the AES key from a private file (refused if others can read it)
 *   --ca FILE          mode ssl: PEM of the agent's certificate or its CA
 *   --thumbprint HEX   mode ssl: pin the agent certificate's SHA-256
 *   --mode M           none | ssl | aes; default aes with --key, ssl with
 *                      --ca/--thumbprint, aes with $OUTPOST_KEY, else none
 *   --agent-type T     otter (1) | buildmaster (2) | hedgehog (3)
 *   --timeout MS       connect deadline (and per request for short calls)
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Command } from 'commander';
import { AgentClient, type AgentTypeInput, type ClientOptions } from '../client/index.js';
import { DEFAULT_PORT } from '../protocol/index.js';
import { type EncryptionMode, normalizeThumbprint } from '../transport/index.js';
import { UsageError } from './errors.js';
import { hubKnows, hubLink, hubSocketPath } from './hub-client.js';
import { readKeyFile } from './secrets.js';

/** The connection options as commander parses them. */
export interface ConnectionFlags {
  key?: string | undefined;
  keyFile?: string | undefined;
  ca?: string | undefined;
  thumbprint?: string | undefined;
  mode?: string | undefined;
  agentType?: string | undefined;
  timeout?: string | undefined;
}

/** Validated connection settings (files read, key checked). */
export interface ConnectionSettings {
  mode: EncryptionMode;
  key?: string;
  ca?: Buffer;
  thumbprint?: string;
  agentType: AgentTypeInput;
  timeoutMs: number;
}

/** An agent's address. `label` is how the CLI names it (`web01`, `10.0.0.5:4000`, `[::1]:4000`). */
export interface Target {
  host: string;
  port: number;
  label: string;
}

/** A remote path: `HOST[:PORT]:PATH`. */
export interface RemoteSpec extends Target {
  path: string;
}

export const DEFAULT_TIMEOUT_MS = 10_000;

export { CONNECTION_HELP } from './usage.js';

/** Adds the shared connection options to a command. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--key <hex>', "the agent's AES key, 32/48/64 hex digits (default: $OUTPOST_KEY)")
    .option('--key-file <file>', "read the agent's AES key from FILE (it must not be readable by others)")
    .option('--ca <file>', "mode ssl: PEM file of the agent's certificate or of its CA")
    .option('--thumbprint <hex>', "mode ssl: pin the agent certificate's SHA-256 thumbprint")
    .option(
      '--mode <mode>',
      'none, ssl or aes (default: aes with a key, ssl with --ca/--thumbprint, else none)',
    )
    .option(
      '--agent-type <type>',
      'product host serving files and processes: otter (1), buildmaster (2) or hedgehog (3) (default: buildmaster)',
    )
    .option('--timeout <ms>', `connect deadline in milliseconds (default: ${DEFAULT_TIMEOUT_MS})`)
    .option('-p, --port <port>', `port of hosts that name none (default: ${DEFAULT_PORT}, or the alias's)`)
    .option('--config <file>', 'hosts file (default: $OUTPOST_CONFIG, else ~/.config/outpost/hosts.toml)')
    .option('--hosts <file>', 'also every host listed in FILE (one HOST[:PORT], alias or @group per line)')
    .option('--parallel <n>', 'when on several hosts: at most N at once (default: all, up to 64)')
    .option('--fail-fast', 'when on several hosts: stop at the first host that fails')
    .option('--json', 'print JSON (one JSON object per line when on several hosts)');
}

const AGENT_TYPES: Record<string, AgentTypeInput> = {
  buildmaster: 'BuildMaster',
  otter: 'Otter',
  hedgehog: 'Hedgehog',
  '1': 'Otter',
  '2': 'BuildMaster',
  '3': 'Hedgehog',
};

const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

function checkHost(host: string, text: string, example: string): void {
  if (host === '' || (isIP(host) === 0 && !HOST_NAME.test(host)))
    throw new UsageError(`"${text}" does not start with a host name or IP address; write it as ${example}`);
}

function parsePortText(port: string, text: string, example: string): number {
  const n = Number(port);
  if (!/^\d{1,5}$/.test(port) || n < 1 || n > 65535)
    throw new UsageError(
      `"${text}": port "${port}" must be a number from 1 to 65535; write it as ${example}`,
    );
  return n;
}

/** How the CLI names an agent: the host, with the port when it is not the default. */
export function targetLabel(host: string, port: number): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === DEFAULT_PORT ? h : `${h}:${port}`;
}

/** Parses `HOST`, `HOST:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 address. */
export function parseTarget(text: string): Target {
  const example = `HOST or HOST:PORT, e.g. 10.0.0.5, web01:${DEFAULT_PORT} or [::1]:${DEFAULT_PORT}`;
  const t = text.trim();
  let host: string;
  let port = DEFAULT_PORT;
  if (t.startsWith('[')) {
    const end = t.indexOf(']');
    host = end < 0 ? '' : t.slice(1, end);
    const rest = end < 0 ? '' : t.slice(end + 1);
    if (end < 0 || isIP(host) !== 6 || (rest !== '' && !rest.startsWith(':')))
      throw new UsageError(`"${text}" is not a valid [IPv6]:PORT address; write it as ${example}`);
    if (rest !== '') port = parsePortText(rest.slice(1), text, example);
  } else if (isIP(t) === 6) {
    host = t;
  } else {
    const i = t.indexOf(':');
    host = i < 0 ? t : t.slice(0, i);
    if (i >= 0) port = parsePortText(t.slice(i + 1), text, example);
  }
  checkHost(host, text, example);
  return { host, port, label: targetLabel(host, port) };
}

/**
 * Parses `HOST:PATH`, `HOST:PORT:PATH`, `[IPv6]:PATH` or `[IPv6]:PORT:PATH`.
 * A digits-only segment between two colons is the port.
 */
export function parseRemote(text: string): RemoteSpec {
  const example = `HOST:PATH, e.g. 10.0.0.5:/srv/app, web01:${DEFAULT_PORT}:/srv/app or [::1]:/srv/app`;
  let host: string;
  let rest: string;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    host = end < 0 ? '' : text.slice(1, end);
    if (end < 0 || isIP(host) !== 6 || text[end + 1] !== ':')
      throw new UsageError(`"${text}" is not a remote path; write it as ${example}`);
    rest = text.slice(end + 2);
  } else {
    const i = text.indexOf(':');
    if (i < 0)
      throw new UsageError(
        `"${text}" is not a remote path (no colon); write the agent's host, a colon and the path: ${example}`,
      );
    host = text.slice(0, i);
    rest = text.slice(i + 1);
  }
  checkHost(host, text, example);
  let port = DEFAULT_PORT;
  const m = /^(\d+):(.*)$/s.exec(rest);
  if (m) {
    port = parsePortText(m[1]!, text, example);
    rest = m[2]!;
  }
  if (rest === '') throw new UsageError(`"${text}" names no remote path; add it after the colon: ${example}`);
  if (rest.includes('\0')) throw new UsageError(`"${text}": the path contains a NUL character`);
  return { host, port, label: targetLabel(host, port), path: rest };
}

/** True when `text` looks like a remote path (`host:…` or `[v6]:…`) rather than a local one. */
export function looksRemote(text: string): boolean {
  if (text.startsWith('[')) return /^\[[0-9A-Fa-f:.]+\]:/.test(text);
  const i = text.indexOf(':');
  if (i <= 0) return false;
  // A Windows drive letter (C:\dir) is local.
  if (i === 1 && /^[A-Za-z]:[\\/]/.test(text)) return false;
  return !text.slice(0, i).includes('/') && !text.slice(0, i).includes('\\');
}

function parseTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_TIMEOUT_MS;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 3_600_000)
    throw new UsageError(`--timeout: "${text}" must be a number of milliseconds from 1 to 3600000`);
  return n;
}

/** Checks an AES key's hex form; `where` names the setting in the message. */
export function checkKey(key: string, where: string): string {
  const k = key.trim();
  if (!/^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{48}|[0-9a-fA-F]{64})$/.test(k))
    throw new UsageError(
      `${where}: the AES key must be 32, 48 or 64 hex digits (got ${k.length} characters); ` +
        "use the key in the agent's InedoAgent.config, as `outpost init` or `npm start` printed it",
    );
  return k;
}

/**
 * Validates the connection options (and reads --ca). Mode defaults: aes
 * with --key, ssl with --ca/--thumbprint, aes with $OUTPOST_KEY, else none.
 */
export async function connectionSettings(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConnectionSettings> {
  const timeoutMs = parseTimeout(flags.timeout);
  const typeText = (flags.agentType ?? 'buildmaster').toLowerCase();
  const agentType = AGENT_TYPES[typeText];
  if (agentType === undefined)
    throw new UsageError(
      `--agent-type: "${flags.agentType}" must be otter (1), buildmaster (2) or hedgehog (3) (default buildmaster)`,
    );
  let mode: EncryptionMode | undefined;
  if (flags.mode !== undefined) {
    const m = flags.mode.toLowerCase();
    if (m !== 'none' && m !== 'ssl' && m !== 'aes')
      throw new UsageError(
        `--mode: "${flags.mode}" must be none, ssl or aes (the agent's Listener/Encryption)`,
      );
    mode = m;
  }
  const envKey = env.OUTPOST_KEY !== undefined && env.OUTPOST_KEY.trim() !== '' ? env.OUTPOST_KEY : undefined;
  if (flags.key !== undefined && flags.keyFile !== undefined)
    throw new UsageError('give --key or --key-file, not both');
  if (flags.keyFile !== undefined) flags = { ...flags, key: await readKeyFile(flags.keyFile, '--key-file') };
  const sslGiven = flags.ca !== undefined || flags.thumbprint !== undefined;
  mode ??= flags.key !== undefined ? 'aes' : sslGiven ? 'ssl' : envKey !== undefined ? 'aes' : 'none';
  const settings: ConnectionSettings = { mode, agentType, timeoutMs };
  if (mode === 'aes') {
    if (flags.key !== undefined)
      settings.key = checkKey(flags.key, flags.keyFile !== undefined ? `key file ${flags.keyFile}` : '--key');
    else if (envKey !== undefined) settings.key = checkKey(envKey, 'OUTPOST_KEY');
    else
      throw new UsageError(
        "mode aes needs the agent's key; pass --key HEX or set OUTPOST_KEY (the key `outpost init` or `npm start` printed)",
      );
  } else if (mode === 'ssl') {
    if (flags.ca === undefined && flags.thumbprint === undefined)
      throw new UsageError(
        'mode ssl needs a way to verify the agent: pass its certificate with --ca FILE or its SHA-256 thumbprint with --thumbprint HEX (as the agent or `outpost cert` printed it)',
      );
    if (flags.thumbprint !== undefined) {
      const t = normalizeThumbprint(flags.thumbprint);
      if (t === null)
        throw new UsageError(
          '--thumbprint: expected the SHA-256 thumbprint as 64 hex digits (colons allowed), as `outpost cert` printed it',
        );
      settings.thumbprint = t;
    }
    if (flags.ca !== undefined) {
      try {
        settings.ca = await readFile(flags.ca);
      } catch (err) {
        throw new UsageError(
          `--ca: cannot read ${flags.ca} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass the agent's certificate as a PEM file`,
        );
      }
      if (!settings.ca.includes('-----BEGIN CERTIFICATE-----'))
        throw new UsageError(`--ca: ${flags.ca} is not a PEM certificate (no BEGIN CERTIFICATE line)`);
    }
  }
  return settings;
}

/** The SDK options for one target. */
export function clientOptions(
  target: Target,
  settings: ConnectionSettings,
  signal?: AbortSignal,
): ClientOptions {
  return {
    host: target.host,
    port: target.port,
    mode: settings.mode,
    ...(settings.key !== undefined ? { key: settings.key } : {}),
    ...(settings.ca !== undefined ? { ca: settings.ca } : {}),
    ...(settings.thumbprint !== undefined ? { thumbprint: settings.thumbprint } : {}),
    agentType: settings.agentType,
    timeoutMs: settings.timeoutMs,
    ...(signal ? { signal } : {}),
  };
}

/**
 * The hub route, last in name resolution: a client host alias or a group
 * (src/cli/hosts.ts resolveTargets) has already become an address, so an
 * alias wins over a hub name of the same spelling; an explicit `HOST:PORT`
 * or an IP address is dialed; a bare name the local hub knows (`outpost
 * hub`, its agents file) goes through the hub; anything else is dialed
 * (DNS). Returns the SDK options for the hub route, or null to dial.
 */
export async function viaHub(
  target: Target,
  settings: ConnectionSettings,
  signal?: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ClientOptions | null> {
  if (target.label !== target.host || isIP(target.host) !== 0) return null;
  const socketPath = hubSocketPath(undefined, env);
  if (!(await hubKnows(target.host, socketPath))) return null;
  return {
    host: target.host,
    // The agent answers mode none over its link: TLS is between the hub and the agent.
    mode: 'none',
    agentType: settings.agentType,
    timeoutMs: settings.timeoutMs,
    link: (s) =>
      hubLink(target.host, { socketPath, timeoutMs: settings.timeoutMs, ...(s ? { signal: s } : {}) }),
    ...(signal ? { signal } : {}),
  };
}

/**
 * How long the agent keeps a CLI session whose client vanished (kill -9,
 * network gone) before it ends it with its processes: short, because the
 * CLI never resumes a session (SetSessionOptions, an Outpost extension;
 * other agents keep their default).
 */
export const CLI_DETACHED_TIMEOUT_MS = 30_000;

/**
 * Connects to one agent (through the local hub when it knows the name; see
 * viaHub), resuming `sessionId` when given, and asks for the CLI's short
 * detached timeout.
 */
export async function connect(
  target: Target,
  settings: ConnectionSettings,
  signal?: AbortSignal,
  sessionId?: number,
): Promise<AgentClient> {
  const hub = await viaHub(target, settings, signal);
  const client = await AgentClient.connect({
    ...(hub ?? clientOptions(target, settings, signal)),
    ...(sessionId !== undefined ? { sessionId } : {}),
  });
  // Not awaited: meta requests are answered in order, before anything this command does next.
  if (sessionId === undefined) client.setDetachedTimeout(CLI_DETACHED_TIMEOUT_MS).catch(() => {});
  return client;
}

/**
 * Connects, runs `fn`, then ends the session on the agent (its processes
 * and handles go with it) whatever happened.
 */
export async function withClient<T>(
  target: Target,
  settings: ConnectionSettings,
  fn: (client: AgentClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const client = await connect(target, settings, signal);
  try {
    return await fn(client);
  } finally {
    await endSession(client);
  }
}

/**
 * Ends the session at once (CloseSession, also with requests in flight: an
 * interrupted command ends its processes), giving up after a few seconds —
 * then it only closes the connection, and the agent ends the detached
 * session itself.
 */
export async function endSession(client: AgentClient): Promise<void> {
  try {
    await client.closeSession({ signal: AbortSignal.timeout(3000) });
  } catch {
    await client.close({ keepSession: true }).catch(() => {});
  }
}

/** Collects a repeatable option's values (`--include a --include b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
