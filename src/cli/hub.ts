/**
 * `outpost hub`: a long-running process that accepts outbound agents (an
 * `AgentListener`) and makes each reachable by name from every client
 * command on this machine; `outpost hub init` makes its certificate,
 * `outpost hub key NAME` gives an agent a key, `outpost agents` lists them.
 *
 * CLI commands reach the hub over an owner-only Unix socket
 * (src/transport/local-socket.ts), one JSON line per request:
 *
 *   {"op":"agents"}                          → {"ok":true,"agents":[…],"configured":[names]}
 *   {"op":"resolve","agent":"web01"}         → {"ok":true,"known":true,"connected":true}
 *   {"op":"link","agent":"web01","timeoutMs":10000}
 *                                            → {"ok":true} then raw bytes both ways,
 *                                              spliced to one idle link of web01
 *                                            | {"ok":false,"error":"…"}
 *
 * After a link's `{"ok":true}` the CLI runs its ordinary client handshake
 * over the splice (mode none: TLS is between hub and agent), so every
 * command, resume included, works unchanged. The splice is two pipes:
 * backpressure end to end, no buffering beyond the streams' own.
 *
 * Files (default directory ~/.outpost/hub, override --dir): hub.crt,
 * hub.key (0600), agents (0600; one `NAME KEY` per line, `#` comments),
 * re-read when an unknown key arrives (at most once a second), so
 * `outpost hub key` takes effect without a restart.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import type { Server, Socket } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { AgentListener, type OutboundAgent } from '../client/index.js';
import { DEFAULT_PORT } from '../protocol/index.js';
import {
  LocalSocketError,
  listenLocal,
  readJsonLine,
  thumbprintOfPem,
  writeJsonLine,
} from '../transport/index.js';
import { cert } from './cert.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { formatTime, table } from './format.js';
import { type HostsConfig, loadHostsConfig } from './hosts.js';
import { ask, hubSocketPath } from './hub-client.js';
import { writeFileAtomic } from './init.js';

export const HUB_CERT = 'hub.crt';
export const HUB_KEY = 'hub.key';
export const HUB_AGENTS = 'agents';
const NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_])?$/;

/** The hub's directory: --dir, else ~/.outpost/hub. */
export function hubDir(dir?: string): string {
  return resolve(dir ?? join(homedir(), '.outpost', 'hub'));
}

/** Parses an agents file: `NAME KEY` per line; returns key → name. */
export function parseAgentsFile(text: string, file: string): Map<string, string> {
  const keys = new Map<string, string>();
  const names = new Set<string>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)\s+(\S+)$/.exec(line);
    if (!m || !NAME.test(m[1]!))
      throw new UsageError(
        `${file} line ${i + 1}: expected "NAME KEY" (a name of letters, digits, . - _ and the agent's key); \`outpost hub key NAME\` adds one`,
      );
    const [, name, key] = m as unknown as [string, string, string];
    if (names.has(name)) throw new UsageError(`${file} line ${i + 1}: agent ${name} is listed twice`);
    if (keys.has(key))
      throw new UsageError(`${file} line ${i + 1}: this key is already agent ${keys.get(key)}'s`);
    names.add(name);
    keys.set(key, name);
  }
  return keys;
}

async function loadAgents(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new UsageError(
      `--agents: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  return parseAgentsFile(text, file);
}

// ------------------------------------------------------------------ the hub process

export interface HubOptions {
  listen?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  agents?: string | undefined;
  socket?: string | undefined;
  dir?: string | undefined;
}

export interface RunningHub {
  listener: AgentListener;
  socketPath: string;
  close(): Promise<void>;
}

function parseListen(text: string | undefined): { host: string; port: number } {
  if (text === undefined) return { host: '0.0.0.0', port: DEFAULT_PORT };
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(`--listen: "${text}" must be HOST:PORT or PORT (e.g. 0.0.0.0:${DEFAULT_PORT})`);
  return { host: m[1] || m[2] || '0.0.0.0', port };
}

/** Starts the hub: the agent listener and the local socket. */
export async function startHub(
  options: HubOptions,
  log: (line: string) => void = () => {},
): Promise<RunningHub> {
  const dir = hubDir(options.dir);
  const certFile = resolve(options.cert ?? join(dir, HUB_CERT));
  const keyFile = resolve(options.key ?? join(dir, HUB_KEY));
  const agentsFile = resolve(options.agents ?? join(dir, HUB_AGENTS));
  const { host, port } = parseListen(options.listen);
  const read = async (file: string, flag: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new UsageError(
        `${flag}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); run \`outpost hub init\` first`,
      );
    }
  };
  const certPem = await read(certFile, '--cert');
  const keyPem = await read(keyFile, '--key');
  let keys = await loadAgents(agentsFile);
  let lastReload = Date.now();
  const lookup = async (key: string): Promise<string | null> => {
    const hit = keys.get(key);
    if (hit !== undefined) return hit;
    if (Date.now() - lastReload < 1000) return null;
    lastReload = Date.now();
    try {
      keys = await loadAgents(agentsFile);
    } catch (err) {
      log(`agents file not reloaded: ${(err as Error).message}`);
    }
    return keys.get(key) ?? null;
  };
  let listener: AgentListener;
  try {
    listener = await AgentListener.listen({ cert: certPem, key: keyPem, host, port, agents: lookup });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE') throw new UsageError(`--listen: port ${port} on ${host} is already in use`);
    if (e.code === 'EACCES') throw new UsageError(`--listen: not allowed to listen on port ${port}`);
    throw new UsageError(`--cert/--key: cannot use ${certFile} and ${keyFile} (${e.message})`);
  }
  listener.on('arrive', (a) => log(`agent ${a.name} arrived from ${a.address}`));
  listener.on('leave', (a) => log(`agent ${a.name} left`));
  listener.on('refused', (r) => log(`link from ${r.remote} refused: ${r.reason}`));

  const socketPath = hubSocketPath(options.socket);
  let server: Server;
  try {
    server = await listenLocal(socketPath, (s) => serveLocal(s, listener, () => [...keys.values()]));
  } catch (err) {
    await listener.close();
    if (err instanceof LocalSocketError) throw new UsageError(`--socket: ${err.message}`);
    throw err;
  }
  log(
    `hub listening on ${host}:${listener.address.port} (thumbprint ${listener.thumbprint}); local socket ${socketPath}`,
  );
  return {
    listener,
    socketPath,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await listener.close();
    },
  };
}

interface HubRequest {
  op?: unknown;
  agent?: unknown;
  timeoutMs?: unknown;
}

function serveLocal(socket: Socket, listener: AgentListener, configured: () => string[]): void {
  socket.on('error', () => {});
  readJsonLine<HubRequest>(socket, 4096).then(
    async (req) => {
      const name = typeof req.agent === 'string' ? req.agent : '';
      if (req.op === 'agents') {
        writeJsonLine(socket, { ok: true, agents: listener.agents, configured: configured() });
        socket.end();
        return;
      }
      if (req.op === 'resolve') {
        const known = configured().includes(name);
        writeJsonLine(socket, { ok: true, known, connected: listener.agent(name) !== undefined });
        socket.end();
        return;
      }
      if (req.op === 'link') {
        const timeoutMs =
          typeof req.timeoutMs === 'number' && req.timeoutMs > 0 && req.timeoutMs <= 3_600_000
            ? req.timeoutMs
            : 10_000;
        const abort = new AbortController();
        socket.once('close', () => abort.abort());
        let link: Socket;
        try {
          link = await listener.take(name, { timeoutMs, signal: abort.signal });
        } catch (err) {
          writeJsonLine(socket, { ok: false, error: (err as Error).message });
          socket.end();
          return;
        }
        if (socket.destroyed) {
          link.destroy();
          return;
        }
        writeJsonLine(socket, { ok: true });
        splice(socket, link);
        return;
      }
      writeJsonLine(socket, { ok: false, error: `unknown op ${JSON.stringify(req.op)}` });
      socket.end();
    },
    () => socket.destroy(),
  );
}

/** Bytes both ways with backpressure (pipe); either side closing closes the other. */
function splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const done = () => {
    a.destroy();
    b.destroy();
  };
  a.once('close', done);
  b.once('close', done);
}

// ------------------------------------------------------------------ commands

/** Where a command prints: results on `out` (stdout), explanations on `err` (stderr). */
export interface Printer {
  out(text: string): void;
  err(text: string): void;
}
const STDIO: Printer = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** `outpost hub init`: the hub's certificate and key, an empty agents file; prints the thumbprint. */
export async function hubInit(
  opts: { dir?: string; host?: string[]; force?: boolean },
  print: Printer = STDIO,
): Promise<string> {
  const dir = hubDir(opts.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const r = await cert({ out: dir, name: 'hub', host: opts.host, force: opts.force });
  const agentsFile = join(dir, HUB_AGENTS);
  await writeFileAtomic(
    agentsFile,
    '# NAME KEY — one outbound agent per line; `outpost hub key NAME` adds one\n',
    {
      mode: 0o600,
      overwrite: false,
    },
  ).catch((err: unknown) => {
    if (!(err instanceof UsageError)) throw err; // an existing agents file is kept
  });
  print.err(
    `Wrote ${r.certFile}, ${r.keyFile} (keep it private) and ${agentsFile}.\n` +
      'Agents pin the hub with this SHA-256 thumbprint (Connections/Server/@Thumbprint):\n',
  );
  print.out(`${r.thumbprint}\n`);
  print.err('Next: outpost hub key NAME (for each agent), then outpost hub\n');
  return r.thumbprint;
}

/** `outpost hub key NAME`: a fresh key in the agents file; prints the agent's `outpost init --outbound` line. */
export async function hubKey(
  name: string,
  opts: { dir?: string; agents?: string },
  print: Printer = STDIO,
): Promise<string> {
  if (!NAME.test(name))
    throw new UsageError(`"${name}" is not an agent name: letters, digits, . - _ (at most 64), e.g. web01`);
  const file = resolve(opts.agents ?? join(hubDir(opts.dir), HUB_AGENTS));
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const keys = parseAgentsFile(text, file);
  if ([...keys.values()].includes(name))
    throw new UsageError(`${file} already has an agent ${name}; remove its line first to give it a new key`);
  const key = randomBytes(24).toString('base64url');
  const next = `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${name} ${key}\n`;
  await writeFileAtomic(file, next, { mode: 0o600, overwrite: true });
  const pem = await readFile(join(hubDir(opts.dir), HUB_CERT)).catch(() => null);
  const thumbprint = pem ? thumbprintOfPem(pem) : 'HUB_THUMBPRINT';
  print.err(
    `Added ${name} to ${file}. On ${name}, run (HUB_HOST: this hub's address as ${name} reaches it):\n`,
  );
  print.out(
    `outpost init --outbound HUB_HOST:${DEFAULT_PORT} --server-key ${key} --thumbprint ${thumbprint}\n`,
  );
  return key;
}

export interface AgentsListing {
  agents: (Omit<OutboundAgent, 'since'> & { since: string })[];
  configured: string[];
}

/**
 * A client host alias wins over a hub name of the same spelling (see viaHub
 * in connection.ts): say so for every such name, on stderr.
 */
async function warnAliasCollisions(names: readonly string[]): Promise<void> {
  let config: HostsConfig;
  try {
    config = await loadHostsConfig();
  } catch {
    return; // an unreadable hosts file is reported by the commands that use it
  }
  for (const name of new Set(names)) {
    const alias = config.hosts.get(name);
    if (alias)
      process.stderr.write(
        `outpost: warning: "${name}" is also a host alias in ${config.file} (${alias.address}); client commands use the alias, not this hub agent: rename one of them\n`,
      );
  }
}

async function listAgents(opts: { socket?: string; json?: boolean }): Promise<void> {
  const socketPath = hubSocketPath(opts.socket);
  let r: AgentsListing & { ok: boolean };
  try {
    r = await ask(socketPath, { op: 'agents' });
  } catch (err) {
    throw new CliError(
      `no hub answers at ${socketPath} (${(err as Error).message}); start one with \`outpost hub\` or pass --socket / OUTPOST_HUB`,
      EXIT.CONNECTION,
    );
  }
  await warnAliasCollisions([...r.agents.map((a) => a.name), ...r.configured]);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(r.agents)}\n`);
    return;
  }
  const rows = [['NAME', 'ADDRESS', 'SINCE', 'VERSION', 'LINKS', 'STATE']];
  const connected = new Set(r.agents.map((a) => a.name));
  for (const a of r.agents)
    rows.push([
      a.name,
      a.address,
      formatTime(new Date(a.since)),
      a.version ?? '-',
      `${a.idle} idle, ${a.active} in use`,
      a.idle > 0 ? 'ready' : 'busy',
    ]);
  for (const n of r.configured) if (!connected.has(n)) rows.push([n, '-', '-', '-', '-', 'not connected']);
  process.stdout.write(`${table(rows)}\n`);
}

export function registerHub(program: Command): void {
  const hub = program
    .command('hub')
    .description('accept outbound agents and make them reachable by name from this machine')
    .option('--listen <host:port>', `where agents dial in (default: 0.0.0.0:${DEFAULT_PORT})`)
    .option('--cert <file>', 'PEM certificate (default: ~/.outpost/hub/hub.crt)')
    .option('--key <file>', 'PEM private key (default: ~/.outpost/hub/hub.key)')
    .option('--agents <file>', 'agent names and keys, "NAME KEY" per line (default: ~/.outpost/hub/agents)')
    .option(
      '--socket <path>',
      'local socket for CLI commands (default: $OUTPOST_HUB, $XDG_RUNTIME_DIR/outpost/hub.sock or ~/.outpost/hub.sock)',
    )
    .option('--dir <dir>', 'directory of the default files (default: ~/.outpost/hub)')
    .addHelpText(
      'after',
      `
Examples:
  outpost hub init --host hub.example.com     # prints the thumbprint agents pin
  outpost hub key web01                       # prints the command to run on web01
  outpost hub                                 # keep running; agents dial in
  outpost agents                              # who is connected
  outpost exec web01 -- uname -a              # any client command, by name`,
    )
    .action(async (opts: HubOptions) => {
      const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      const running = await startHub(opts, log);
      await new Promise<void>((resolveStop) => {
        const stop = () => {
          log('hub shutting down');
          running.close().finally(resolveStop);
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
  hub
    .command('init')
    .description("make the hub's TLS certificate and key; print the thumbprint agents pin")
    .option('--dir <dir>', 'where to write hub.crt, hub.key and agents (default: ~/.outpost/hub)')
    .option(
      '--host <host>',
      'a name or address agents dial (repeatable; default: this host, localhost, 127.0.0.1, ::1)',
      (v: string, p: string[] | undefined) => [...(p ?? []), v],
    )
    .option('--force', 'replace an existing certificate and key')
    // --dir is also the parent's option: commander hands it to `hub`, so merge them.
    .action(async (_opts: unknown, cmd: Command) => {
      await hubInit(cmd.optsWithGlobals<{ dir?: string; host?: string[]; force?: boolean }>());
    });
  hub
    .command('key')
    .argument('<name>', 'the agent name CLI commands will use, e.g. web01')
    .description("give an agent a key in the hub's agents file; print the command to run on the agent")
    .option('--dir <dir>', 'hub directory (default: ~/.outpost/hub)')
    .option('--agents <file>', 'agents file (default: DIR/agents)')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      await hubKey(name, cmd.optsWithGlobals<{ dir?: string; agents?: string }>());
    });
}

export function registerAgents(program: Command): void {
  program
    .command('agents')
    .description('list the outbound agents connected to the local hub: name, address, since, version, links')
    .option(
      '--socket <path>',
      'the hub socket (default: $OUTPOST_HUB, $XDG_RUNTIME_DIR/outpost/hub.sock or ~/.outpost/hub.sock)',
    )
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Examples:
  outpost agents                              # NAME ADDRESS SINCE VERSION LINKS STATE
  outpost agents --json | jq -r '.[].name'`,
    )
    .action(async (opts: { socket?: string; json?: boolean }) => {
      await listAgents(opts);
    });
}
