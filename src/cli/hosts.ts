/**
 * The client hosts file and the one function that turns what the user typed
 * into the agents a command talks to.
 *
 * File: TOML (smol-toml), at `--config FILE`, else `$OUTPOST_CONFIG`, else
 * `$XDG_CONFIG_HOME/outpost/hosts.toml` (`~/.config/outpost/hosts.toml`).
 *
 *     [hosts.web01]
 *     address = "10.0.0.5"          # required
 *     port = 46400                  # default 46336
 *     mode = "aes"                  # none | ssl | aes (default as for --mode)
 *     key_file = "~/.config/outpost/fleet.key"   # or key = "HEX"
 *     # thumbprint = "AB:CD:…"  /  ca = "agent.crt"   (mode ssl)
 *     # agent_type = "otter"   timeout = 20000
 *
 *     [groups]
 *     web = ["web01", "web02", "10.0.0.9:46400"]
 *
 * Like ssh, a key file, or a hosts file that holds a `key`, that group or
 * others can read is refused with the chmod that fixes it.
 *
 * Resolution (`resolveTargets`): each name goes through RESOLVERS in order;
 * the first that knows it wins: `@group` → its members (each resolved in
 * turn), an alias of the hosts file, then a literal `HOST[:PORT]`. A new
 * source (e.g. hub names) is one more entry in that list.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { DEFAULT_PORT } from '../protocol/index.js';
import { type ConnectionFlags, parseRemote, parseTarget, type Target, targetLabel } from './connection.js';
import { UsageError } from './errors.js';
import { checkPrivate } from './secrets.js';

/* ---- `--hosts FILE`: one HOST[:PORT] (or alias, or @group) per line ---- */

export interface HostEntry {
  target: Target;
  /** Per-host connection options from the hosts file. */
  flags: Partial<ConnectionFlags>;
  /** Line number in the file (1-based). */
  line: number;
  /** The address as written (an alias or `@group` of the hosts file is resolved through it). */
  raw: string;
}

const LINE_SETTINGS = new Set(['key', 'thumbprint', 'mode']);

/** Parses a hosts file's text; `name` is used in error messages. */
export function parseHosts(text: string, name: string): HostEntry[] {
  const entries: HostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const line = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (line === '') return;
    const [address = '', ...settings] = line.split(/\s+/);
    let target: Target;
    try {
      target = address.startsWith('@')
        ? { host: address, port: DEFAULT_PORT, label: address }
        : parseTarget(address);
    } catch (err) {
      throw new UsageError(`${name}:${i + 1}: ${(err as Error).message}`);
    }
    const flags: Partial<ConnectionFlags> = {};
    for (const s of settings) {
      const eq = s.indexOf('=');
      const key = eq < 0 ? s : s.slice(0, eq);
      if (eq < 0 || !LINE_SETTINGS.has(key))
        throw new UsageError(
          `${name}:${i + 1}: "${key}" is not a host setting; after HOST[:PORT] write key=HEX, thumbprint=HEX or mode=none|ssl|aes`,
        );
      flags[key as 'key' | 'thumbprint' | 'mode'] = s.slice(eq + 1);
    }
    entries.push({ target, flags, line: i + 1, raw: address });
  });
  return entries;
}

/** Reads and parses a hosts file. */
export async function readHostsFile(file: string): Promise<HostEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `--hosts: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass a file with one HOST[:PORT] per line`,
    );
  }
  const entries = parseHosts(text, file);
  if (entries.length === 0)
    throw new UsageError(`--hosts: ${file} lists no hosts; write one HOST[:PORT] per line`);
  return entries;
}

/** One alias of the hosts file. */
export interface HostAlias {
  name: string;
  address: string;
  port?: number;
  flags: Partial<ConnectionFlags>;
}

export interface HostsConfig {
  /** The file it was read from (also when it does not exist). */
  file: string;
  exists: boolean;
  hosts: Map<string, HostAlias>;
  groups: Map<string, string[]>;
}

/** One agent a command talks to, with the connection settings that apply to it. */
export interface ResolvedTarget {
  target: Target;
  /** Per-host connection options (alias or `--hosts` line); they win over the command line's. */
  flags: Partial<ConnectionFlags>;
  /** Where it came from, for error messages: `hosts.toml: web01`, `list.txt:3`, `argument`. */
  source: string;
}

/** What resolution needs: the hosts file and the command line. */
export interface ResolveContext {
  config: HostsConfig;
  /** `-p PORT`: the port of every target that names none itself. */
  port?: number | undefined;
}

type Resolver = (name: string, ctx: ResolveContext, depth: number) => ResolvedTarget[] | null;

/** Alias and group names: what is a valid host name, so a hosts-file line may hold either. */
const NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const ALIAS_KEYS = new Set([
  'address',
  'port',
  'mode',
  'key',
  'key_file',
  'thumbprint',
  'ca',
  'agent_type',
  'timeout',
]);

/** The hosts file's path: --config, $OUTPOST_CONFIG, $XDG_CONFIG_HOME/outpost/hosts.toml, ~/.config/…. */
export function hostsFilePath(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return resolve(expandHome(flag, env));
  if (env.OUTPOST_CONFIG) return resolve(expandHome(env.OUTPOST_CONFIG, env));
  const base = env.XDG_CONFIG_HOME ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config');
  return join(base, 'outpost', 'hosts.toml');
}

function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  return p === '~' || p.startsWith('~/') ? join(env.HOME ?? homedir(), p.slice(1)) : p;
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new UsageError(`${where} must be a non-empty string`);
  return v;
}

function parseAlias(name: string, raw: unknown, file: string, baseDir: string): HostAlias {
  const where = `${file}: [hosts.${name}]`;
  if (!NAME.test(name)) throw new UsageError(`${where}: alias names are letters, digits, "_", "-" and "."`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new UsageError(`${where} must be a table with at least address = "HOST"`);
  const t = raw as Record<string, unknown>;
  for (const k of Object.keys(t))
    if (!ALIAS_KEYS.has(k))
      throw new UsageError(`${where}: "${k}" is not a host setting; use ${[...ALIAS_KEYS].join(', ')}`);
  if (t.address === undefined) throw new UsageError(`${where} needs address = "HOST or IP"`);
  const address = str(t.address, `${where} address`);
  const alias: HostAlias = { name, address, flags: {} };
  if (t.port !== undefined) {
    const p = t.port;
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535)
      throw new UsageError(`${where} port must be a number from 1 to 65535`);
    alias.port = p;
  }
  if (t.key !== undefined && t.key_file !== undefined)
    throw new UsageError(`${where}: give key or key_file, not both`);
  if (t.mode !== undefined) alias.flags.mode = str(t.mode, `${where} mode`);
  if (t.key !== undefined) alias.flags.key = str(t.key, `${where} key`);
  const rel = (p: string) => {
    const e = expandHome(p, process.env);
    return isAbsolute(e) ? e : resolve(baseDir, e);
  };
  if (t.key_file !== undefined) alias.flags.keyFile = rel(str(t.key_file, `${where} key_file`));
  if (t.thumbprint !== undefined) alias.flags.thumbprint = str(t.thumbprint, `${where} thumbprint`);
  if (t.ca !== undefined) alias.flags.ca = rel(str(t.ca, `${where} ca`));
  if (t.agent_type !== undefined) alias.flags.agentType = String(t.agent_type);
  if (t.timeout !== undefined) alias.flags.timeout = String(t.timeout);
  return alias;
}

/** Parses the hosts file's text (no permission check). */
export function parseHostsConfig(text: string, file: string): HostsConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    const where = err instanceof TomlError ? `:${err.line}:${err.column}` : '';
    throw new UsageError(
      `${file}${where}: not valid TOML (${(err as Error).message.split('\n')[0]}); see docs/CLI.md, "Hosts file"`,
    );
  }
  const config: HostsConfig = { file, exists: true, hosts: new Map(), groups: new Map() };
  for (const k of Object.keys(doc))
    if (k !== 'hosts' && k !== 'groups')
      throw new UsageError(`${file}: unknown table [${k}]; the file has [hosts.NAME] tables and [groups]`);
  const hosts = (doc.hosts ?? {}) as Record<string, unknown>;
  for (const [name, raw] of Object.entries(hosts))
    config.hosts.set(name, parseAlias(name, raw, file, dirname(file)));
  const groups = (doc.groups ?? {}) as Record<string, unknown>;
  for (const [name, members] of Object.entries(groups)) {
    if (!NAME.test(name))
      throw new UsageError(`${file}: group "${name}": names are letters, digits, "_", "-" and "."`);
    if (!Array.isArray(members) || members.some((m) => typeof m !== 'string' || m === ''))
      throw new UsageError(`${file}: [groups] ${name} must be a list of host names, e.g. ["web01", "web02"]`);
    config.groups.set(name, members as string[]);
  }
  return config;
}

/**
 * Reads the hosts file. A missing file is an empty config, unless it was
 * named explicitly (--config / $OUTPOST_CONFIG).
 */
export async function loadHostsConfig(
  flag?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<HostsConfig> {
  const file = hostsFilePath(flag, env);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const explicit = (flag !== undefined && flag !== '') || Boolean(env.OUTPOST_CONFIG);
    if (code === 'ENOENT' && !explicit) return { file, exists: false, hosts: new Map(), groups: new Map() };
    throw new UsageError(
      `cannot read the hosts file ${file} (${code ?? String(err)}); check --config / OUTPOST_CONFIG, or create it with outpost hosts add NAME ADDR`,
    );
  }
  const config = parseHostsConfig(text, file);
  if ([...config.hosts.values()].some((h) => h.flags.key !== undefined))
    await checkPrivate(file, 'the hosts file (it holds keys)');
  return config;
}

/** `@group`: its members, each resolved in turn (groups may name groups, to a small depth). */
const groupResolver: Resolver = (name, ctx, depth) => {
  if (!name.startsWith('@')) return null;
  const g = name.slice(1);
  const members = ctx.config.groups.get(g);
  if (!members) {
    const known = [...ctx.config.groups.keys()];
    throw new UsageError(
      `no group "${g}" in ${ctx.config.file}${ctx.config.exists ? '' : ' (the file does not exist)'}; ` +
        (known.length ? `groups: ${known.map((k) => `@${k}`).join(', ')}` : 'add one under [groups]'),
    );
  }
  if (depth > 8) throw new UsageError(`group @${g} in ${ctx.config.file} contains itself`);
  return members.flatMap((m) => resolveName(m, ctx, depth + 1));
};

/** An alias of the hosts file. */
const aliasResolver: Resolver = (name, ctx) => {
  const a = ctx.config.hosts.get(name);
  if (!a) return null;
  const t = parseTarget(a.address);
  const port = ctx.port ?? a.port ?? (t.port !== DEFAULT_PORT ? t.port : DEFAULT_PORT);
  return [
    {
      target: { host: t.host, port, label: name },
      flags: a.flags,
      source: `${ctx.config.file}: [hosts.${name}]`,
    },
  ];
};

/** A literal `HOST[:PORT]`. */
const addressResolver: Resolver = (name, ctx) => {
  const t = parseTarget(name);
  if (ctx.port !== undefined && !hasPort(name)) {
    return [
      { target: { ...t, port: ctx.port, label: targetLabel(t.host, ctx.port) }, flags: {}, source: name },
    ];
  }
  return [{ target: t, flags: {}, source: name }];
};

/** Sources of names, in order; the first that knows a name wins. */
const RESOLVERS: readonly Resolver[] = [groupResolver, aliasResolver, addressResolver];

function hasPort(text: string): boolean {
  if (text.startsWith('[')) return /\]:\d+$/.test(text);
  return (text.match(/:/g) ?? []).length === 1;
}

function resolveName(name: string, ctx: ResolveContext, depth = 0): ResolvedTarget[] {
  for (const r of RESOLVERS) {
    const found = r(name, ctx, depth);
    if (found) return found;
  }
  return [];
}

/**
 * The one resolution every client command uses: each name (`HOST[:PORT]`,
 * an alias, `@group`) and each line of `--hosts FILE`, in the order given,
 * duplicates (same name, address and port: overlapping groups) dropped.
 */
export async function resolveTargets(
  names: readonly string[],
  options: { hostsFile?: string | undefined; ctx: ResolveContext },
): Promise<ResolvedTarget[]> {
  const out: ResolvedTarget[] = [];
  for (const n of names) out.push(...resolveName(n, options.ctx));
  if (options.hostsFile !== undefined) {
    for (const e of await readHostsFile(options.hostsFile)) {
      // A line may name an alias or a group of the hosts file too; the line's settings win.
      for (const r of resolveName(e.raw, options.ctx))
        out.push({
          ...r,
          flags: { ...r.flags, ...e.flags },
          source: r.source === e.raw ? `${options.hostsFile}:${e.line}` : r.source,
        });
    }
  }
  const seen = new Set<string>();
  return out.filter((r) => {
    const k = `${r.target.label}\0${r.target.host}\0${r.target.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** A remote argument: `@group:PATH`, or `HOST[:PORT]:PATH` / `ALIAS:PATH` (see parseRemote). */
export function splitRemote(text: string): { name: string; path: string } {
  if (text.startsWith('@')) {
    const i = text.indexOf(':');
    if (i < 2 || i === text.length - 1)
      throw new UsageError(`"${text}" is not a remote path; write @GROUP:PATH, e.g. @web:/srv/app`);
    return { name: text.slice(0, i), path: text.slice(i + 1) };
  }
  const spec = parseRemote(text);
  const host = spec.host.includes(':') ? `[${spec.host}]` : spec.host;
  return { name: spec.port === DEFAULT_PORT ? host : `${host}:${spec.port}`, path: spec.path };
}

/**
 * Several remote arguments of one command (cat, rm, mkdir): they must name
 * the same host(s); returns that name and the paths.
 */
export function sameHostRemotes(
  texts: readonly string[],
  command: string,
): { name: string; paths: string[] } {
  const specs = texts.map(splitRemote);
  const first = specs[0]!;
  const other = specs.find((s) => s.name !== first.name);
  if (other)
    throw new UsageError(
      `${command} works on one agent (or group) at a time; ${other.name} differs from ${first.name}`,
    );
  return { name: first.name, paths: specs.map((s) => s.path) };
}

/** True when `name` names more than one agent by itself (a group), so the command fans out. */
export function isGroupName(name: string): boolean {
  return name.startsWith('@');
}

/** Parses `-p PORT`. */
export function parsePortFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text) || n < 1 || n > 65535)
    throw new UsageError(`-p: "${text}" must be a port number from 1 to 65535`);
  return n;
}

/** Makes the hosts file's directory (0700) if needed. */
export async function ensureConfigDir(file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
}
