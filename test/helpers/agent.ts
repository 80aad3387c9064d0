/**
 * Runs the real `outpost serve` process for tests (and for other layers'
 * end-to-end tests):
 *
 *   const agent = await startAgentProcess({ mode: 'aes', allowedRoots: [dir] });
 *   t.after(() => agent.stop());
 *   const { connection } = await agent.connect();
 *   const client = new TestClient(connection);
 *   await client.ping();
 *
 * It writes a config into a fresh temp dir (root paths and the extension
 * cache default to <dir>/state/…, so the agent never touches anything outside
 * it), spawns `node dist/cli/main.js serve --config <file>` (the build users
 * run; scripts/run-tests.mjs rebuilds dist/ when src/ is newer) from the repo root, and waits for the agent's "listening" log line. The port is
 * 0 unless given: the OS picks a free one and the helper reads it from that
 * line, which is logged only once the socket accepts — no race with other
 * test processes picking ports. `stop()` sends SIGTERM (SIGKILL after 5 s)
 * and removes the temp dir.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ConfigTemplate, renderConfigXml } from '../../src/agent/config.js';
import {
  AgentType,
  type CommandName,
  decodeMetaResult,
  decodeReply,
  decodeResult,
  encodeMetaRequest,
  encodeProductRequest,
  META_COMMANDS,
  type MetaCommand,
  type ProductCommand,
  type Reply,
  type RequestOf,
  type ResultOf,
} from '../../src/protocol/index.js';
import {
  type AgentConnection,
  type ConnectOptions,
  connectToAgent,
  type EncryptionMode,
  type FramedConnection,
  makeSelfSignedCertificate,
} from '../../src/transport/index.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const MAIN_TS = join(REPO_ROOT, 'src', 'cli', 'main.ts');
/**
 * The built CLI. Spawned agents, their hosts and CLI runs use it rather than
 * `--import tsx src/…`: the same code users run, and a third of the CPU per
 * process start (tsx compiles every module of every process it starts).
 */
export const MAIN_JS = join(REPO_ROOT, 'dist', 'cli', 'main.js');

/** The command line that runs the built CLI. */
export function cliCommand(args: string[]): { command: string; args: string[] } {
  return { command: process.execPath, args: [MAIN_JS, ...args] };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `outpost <args>` to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  const { command, args: argv } = cliCommand(args);
  return new Promise((resolvePromise) => {
    execFile(
      command,
      argv,
      {
        cwd: options.cwd ?? REPO_ROOT,
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 4 << 20,
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolvePromise({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
        });
      },
    );
  });
}

export function tempDir(prefix = 'outpost-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface TestCertificate {
  certFile: string;
  keyFile: string;
  certPem: string;
  thumbprint: string;
}

/** Makes a self-signed EC certificate for 127.0.0.1 / ::1 / localhost, in-process (src/transport/certs.ts). */
export async function makeTestCertificate(dir: string, name = 'agent'): Promise<TestCertificate> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const made = await makeSelfSignedCertificate({
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    days: 2,
  });
  await writeFile(keyFile, made.keyPem, { mode: 0o600 });
  await writeFile(certFile, made.certPem);
  return { certFile, keyFile, certPem: made.certPem, thumbprint: made.thumbprint };
}

export interface AgentProcessOptions extends Partial<Omit<ConfigTemplate, 'mode'>> {
  mode?: EncryptionMode;
  /** Use this directory (it is not removed by stop()) instead of a fresh temp dir. */
  dir?: string;
  /** Write this config text verbatim instead of rendering one (the helper then knows no key/cert). */
  configXml?: string;
  /** Serve this existing config file as is (e.g. one written by `outpost init`). */
  configFile?: string;
  /** Defaults for `connect()` (e.g. the key of a `configFile`). */
  connectWith?: Partial<ConnectOptions>;
  /** Mode ssl: use this certificate instead of making one. */
  certificate?: TestCertificate;
  /** Mode aes: use this key (hex) instead of a random one. */
  keyHexOverride?: string;
  env?: NodeJS.ProcessEnv;
  /** Wait this long for "listening" (default 20 s). */
  startTimeoutMs?: number;
}

export type LogRecord = Record<string, unknown> & { msg?: string; level?: number };

export interface AgentProcess {
  dir: string;
  configPath: string;
  host: string;
  port: number;
  mode: EncryptionMode;
  key?: Buffer;
  certificate?: TestCertificate;
  child: ChildProcess;
  /** Everything written so far (capped at the last 2 MiB each). */
  stdout(): string;
  stderr(): string;
  /** JSON log lines seen so far (the last 10 000). */
  logs(): LogRecord[];
  waitForLog(predicate: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>;
  /** Connects with the agent's mode and key or certificate; `overrides` win. */
  connect(overrides?: Partial<ConnectOptions>): Promise<AgentConnection>;
  /** Resolves when the process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (or `signal`), SIGKILL after 5 s; removes the temp dir unless it was given. */
  stop(
    signal?: NodeJS.Signals,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; elapsedMs: number }>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

const CAP = 2 << 20;

export async function startAgentProcess(options: AgentProcessOptions = {}): Promise<AgentProcess> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await tempDir());
  const mode = options.mode ?? 'aes';
  const configPath = options.configFile ?? join(dir, 'InedoAgent.config');
  let key: Buffer | undefined;
  let certificate: TestCertificate | undefined;
  if (options.configFile !== undefined) {
    // served as is
  } else if (options.configXml !== undefined) {
    await writeFile(configPath, options.configXml);
  } else {
    const template: ConfigTemplate = { address: '127.0.0.1', port: 0, ...options, mode };
    if (mode === 'aes') {
      const hex = options.keyHexOverride ?? options.keyHex ?? randomBytes(32).toString('hex');
      key = Buffer.from(hex, 'hex');
      template.keyHex = hex;
    } else if (mode === 'ssl') {
      certificate = options.certificate ?? (await makeTestCertificate(dir));
      template.certificateFile = certificate.certFile;
      template.keyFile = certificate.keyFile;
    }
    await writeFile(configPath, renderConfigXml(template), { mode: 0o600 });
  }

  const { command, args } = cliCommand(['serve', '--config', configPath]);
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  let err = '';
  let partial = '';
  const records: LogRecord[] = [];
  const waiters = new Set<{ predicate: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out = (out + chunk).slice(-CAP);
    partial += chunk;
    let nl = partial.indexOf('\n');
    while (nl >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      nl = partial.indexOf('\n');
      if (!line.startsWith('{')) continue;
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        continue;
      }
      records.push(rec);
      if (records.length > 10_000) records.shift();
      for (const w of [...waiters])
        if (w.predicate(rec)) {
          waiters.delete(w);
          w.resolve(rec);
        }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err = (err + chunk).slice(-CAP);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolvePromise) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolvePromise({ code, signal });
    }),
  );

  const waitForLog = (predicate: (r: LogRecord) => boolean, timeoutMs = 10_000): Promise<LogRecord> => {
    const found = records.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise<LogRecord>((resolvePromise, reject) => {
      const w = {
        predicate,
        resolve: (r: LogRecord) => {
          clearTimeout(timer);
          resolvePromise(r);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(
          new Error(
            `log line not seen within ${timeoutMs} ms\nstdout:\n${out.slice(-4000)}\nstderr:\n${err.slice(-4000)}`,
          ),
        );
      }, timeoutMs);
      waiters.add(w);
      void exited.then(({ code, signal }) => {
        if (!waiters.has(w)) return;
        waiters.delete(w);
        clearTimeout(timer);
        reject(
          new Error(
            `agent exited (code ${code}, signal ${signal}) before the log line\nstdout:\n${out.slice(-4000)}\nstderr:\n${err.slice(-4000)}`,
          ),
        );
      });
    });
  };

  let listening: LogRecord;
  try {
    listening = await waitForLog((r) => r.msg === 'listening', options.startTimeoutMs ?? 20_000);
  } catch (e) {
    child.kill('SIGKILL');
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const port = listening.port as number;
  const listenAddress = String(listening.address);
  const host = listenAddress === '0.0.0.0' ? '127.0.0.1' : listenAddress === '::' ? '::1' : listenAddress;

  let stopping: ReturnType<AgentProcess['stop']> | null = null;
  const agent: AgentProcess = {
    dir,
    configPath,
    host,
    port,
    mode,
    ...(key ? { key } : {}),
    ...(certificate ? { certificate } : {}),
    child,
    stdout: () => out,
    stderr: () => err,
    logs: () => records,
    waitForLog,
    exited,
    connect: (overrides = {}) =>
      connectToAgent({
        host,
        port,
        mode,
        ...(key ? { key } : {}),
        ...(certificate ? { thumbprint: certificate.thumbprint } : {}),
        timeoutMs: 5000,
        ...options.connectWith,
        ...overrides,
      }),
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      stopping ??= (async () => {
        const t0 = performance.now();
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        const r = await exited;
        clearTimeout(kill);
        const elapsedMs = performance.now() - t0;
        if (ownDir) await rm(dir, { recursive: true, force: true });
        return { ...r, elapsedMs };
      })();
      return stopping;
    },
  };
  return agent;
}

// ------------------------------------------------------------------ requests

/** Thrown by `TestClient.call` for an Error or MetaError reply: `kind` is the error kind or 'MetaError'. */
export class ReplyError extends Error {
  override readonly name = 'ReplyError';
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(`${kind}: ${message}`);
  }
}

interface MetaWaiter {
  /** The meta command whose reply this waits for (MetaError names it too). */
  command: number;
  /** UpdateAgent has no reply on success: it is confirmed by the Ping sent right behind it. */
  confirmedBy: number | null;
  resolve(r: Reply): void;
  reject(e: Error): void;
}

/**
 * A minimal client over a FramedConnection for tests, speaking the
 * contract: product replies matched by token, events collected per token,
 * meta replies matched in order (the agent answers meta requests in order).
 */
export class TestClient {
  private nextToken = 1;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly metaWaiting: MetaWaiter[] = [];
  readonly events = new Map<number, Reply[]>();
  /** Every reply in arrival order (kind and token/command), for ordering checks. */
  readonly log: Reply[] = [];
  closeError: Error | undefined;
  readonly closed: Promise<Error | undefined>;

  constructor(readonly connection: FramedConnection) {
    connection.on('message', (m) => {
      let reply: Reply;
      try {
        reply = decodeReply(m);
      } catch (e) {
        connection.destroy(e as Error);
        return;
      }
      this.log.push(reply);
      if (reply.kind === 'meta' || reply.kind === 'meta-error') {
        this.onMeta(reply);
        return;
      }
      if (reply.kind === 'event') {
        const list = this.events.get(reply.token) ?? [];
        list.push(reply);
        this.events.set(reply.token, list);
        return;
      }
      const w = this.waiting.get(reply.token);
      if (!w) return;
      this.waiting.delete(reply.token);
      w.resolve(reply);
    });
    this.closed = new Promise((resolvePromise) =>
      connection.once('close', (e) => {
        this.closeError = e;
        const err = e ?? new Error('connection closed');
        for (const w of this.waiting.values()) w.reject(err);
        this.waiting.clear();
        for (const w of this.metaWaiting.splice(0)) w.reject(err);
        resolvePromise(e);
      }),
    );
  }

  private onMeta(reply: Reply & { kind: 'meta' | 'meta-error' }): void {
    const w = this.metaWaiting.shift();
    if (!w) return;
    if (w.confirmedBy !== null && reply.kind === 'meta') {
      // The confirming Ping came back: the UpdateAgent succeeded (empty reply).
      w.resolve({ kind: 'meta', command: w.command, body: Buffer.alloc(0) });
      return;
    }
    if (w.confirmedBy !== null && reply.kind === 'meta-error') {
      // The UpdateAgent failed; the Ping's reply follows and is swallowed.
      this.metaWaiting.unshift({
        command: META_COMMANDS.Ping.code,
        confirmedBy: null,
        resolve() {},
        reject() {},
      });
    }
    w.resolve(reply);
  }

  /** Sends a raw product message and waits for the reply with `token`. */
  sendRaw(message: Buffer, token: number, timeoutMs = 30_000): Promise<Reply> {
    return new Promise<Reply>((resolvePromise, reject) => {
      const settle = timedSettlers(resolvePromise, reject, timeoutMs, () => {
        this.waiting.delete(token);
        return new Error(`no reply to token ${token} within ${timeoutMs} ms`);
      });
      this.waiting.set(token, settle);
      this.connection.send(message);
    });
  }

  /** Sends a raw message answered on the meta channel (a meta request, or an unknown agent type) and waits for that answer. */
  sendRawMeta(
    message: Buffer,
    command: number,
    timeoutMs = 30_000,
    confirmedBy: number | null = null,
  ): Promise<Reply> {
    return new Promise<Reply>((resolvePromise, reject) => {
      const settle = timedSettlers(
        resolvePromise,
        reject,
        timeoutMs,
        () => new Error(`no meta reply to command ${command} within ${timeoutMs} ms`),
      );
      this.metaWaiting.push({ command, confirmedBy, ...settle });
      this.connection.send(message);
    });
  }

  /**
   * Sends a typed request and returns the raw reply. Meta (agent type 0):
   * the reply in order; UpdateAgent is followed by a Ping and resolves with
   * an empty 'meta' reply when that Ping comes back, or with its MetaError.
   */
  request<N extends CommandName>(
    agentType: number,
    name: N,
    args: RequestOf<N>,
    timeoutMs?: number,
  ): Promise<Reply> {
    if (agentType === AgentType.Meta) {
      const meta = name as MetaCommand;
      const message = encodeMetaRequest(meta, args as RequestOf<MetaCommand>);
      if (meta !== 'UpdateAgent') return this.sendRawMeta(message, META_COMMANDS[meta].code, timeoutMs);
      const ping = encodeMetaRequest('Ping', { token: 0x5eed });
      const r = this.sendRawMeta(message, META_COMMANDS.UpdateAgent.code, timeoutMs, META_COMMANDS.Ping.code);
      this.connection.send(ping);
      return r;
    }
    const token = this.nextToken++;
    return this.sendRaw(
      encodeProductRequest(agentType, name as ProductCommand, token, args as RequestOf<ProductCommand>),
      token,
      timeoutMs,
    );
  }

  /** Sends a typed request; resolves with the decoded result, rejects with a ReplyError (`Kind: message`). */
  async call<N extends CommandName>(agentType: number, name: N, args: RequestOf<N>): Promise<ResultOf<N>> {
    const r = await this.request(agentType, name, args);
    if (r.kind === 'error') throw new ReplyError(r.errorKind, r.message);
    if (r.kind === 'meta-error') throw new ReplyError('MetaError', r.message);
    if (r.kind === 'meta') return decodeMetaResult(name as MetaCommand, r.body) as ResultOf<N>;
    if (r.kind !== 'response') throw new Error(`unexpected ${r.kind}`);
    return decodeResult(name as ProductCommand, r.body) as ResultOf<N>;
  }

  /** Ping with a random token; resolves when it is echoed. */
  async ping(): Promise<void> {
    const token = randomBytes(4).readInt32LE(0);
    const r = await this.call(AgentType.Meta, 'Ping', { token });
    if (r.token !== token) throw new Error(`Ping echoed ${r.token}, sent ${token}`);
  }

  token(): number {
    return this.nextToken++;
  }

  close(): void {
    this.connection.close();
  }
}

// ------------------------------------------------------------------ raw sockets

export interface RawExchange {
  /** Every byte the agent sent. */
  received: Buffer;
  /** True if the agent closed (or reset) the connection within the wait. */
  closed: boolean;
  /** Milliseconds from connect until close (or until the wait ended). */
  elapsedMs: number;
}

/**
 * Connects a plain TCP socket, writes `chunks` (a function gets the bytes
 * received so far and may write more), and collects what the agent sends
 * until it closes the connection or `waitMs` passes.
 */
export function rawExchange(
  host: string,
  port: number,
  chunks: Buffer[],
  options: {
    waitMs?: number;
    onData?: (received: Buffer, socket: Socket) => void;
    /** Source address to bind (e.g. 127.0.0.7: Linux routes all of 127/8 to loopback). */
    localAddress?: string;
  } = {},
): Promise<RawExchange> {
  return new Promise((resolvePromise, reject) => {
    const socket = netConnect({
      host,
      port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    const parts: Buffer[] = [];
    let t0 = 0;
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolvePromise({ received: Buffer.concat(parts), closed, elapsedMs: performance.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), options.waitMs ?? 3000);
    socket.on('connect', () => {
      t0 = performance.now();
      for (const c of chunks) socket.write(c);
    });
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      options.onData?.(Buffer.concat(parts), socket);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (t0 === 0) {
        clearTimeout(timer);
        settled = true;
        reject(e);
      }
    });
    socket.on('close', () => finish(true));
  });
}

/** resolve/reject that also clear a timer which rejects with `onTimeout()` after `ms`. */
function timedSettlers<T>(
  resolve: (v: T) => void,
  reject: (e: Error) => void,
  ms: number,
  onTimeout: () => Error,
): { resolve: (v: T) => void; reject: (e: Error) => void } {
  const timer = setTimeout(() => reject(onTimeout()), ms);
  return {
    resolve: (v) => {
      clearTimeout(timer);
      resolve(v);
    },
    reject: (e) => {
      clearTimeout(timer);
      reject(e);
    },
  };
}
