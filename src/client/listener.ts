/**
 * `AgentListener`: the orchestrator's end of outbound mode (PROTOCOL.md §8).
 * Agents that cannot be dialed dial it; it hands out `AgentClient`s that
 * behave exactly like dialed ones.
 *
 *     const listener = await AgentListener.listen({ cert, key, port: 46336, agents: { [agentKey]: 'web01' } });
 *     listener.on('arrive', (a) => console.log(a.name, 'is here'));
 *     const web01 = await listener.connect('web01');        // an AgentClient
 *
 * Each accepted TLS connection must open with `Guid | int32 1000 | string
 * key`, read bounded (at most MAX_KEY_BYTES of key) within `prefaceTimeoutMs`;
 * a key the map or callback does not know closes the connection with nothing
 * written. A known one becomes an *idle link* of that agent. A client takes
 * the newest idle link and runs the ordinary client handshake on it (the
 * agent answers mode 0: TLS is underneath); the agent then dials its next
 * link. Reconnects and resumes take the next idle link of the same agent,
 * so `reconnect: true` survives the agent's link dropping and coming back.
 *
 * An agent has *arrived* while it has at least one link (idle or in use),
 * and *leaves* when its last one closes.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import {
  DEFAULT_PORT,
  decodeOutboundHello,
  encodeClientHello,
  formatVersion,
  isHelloPrefix,
} from '../protocol/index.js';
import { HandshakeError, readExactly, thumbprintOfPem } from '../transport/index.js';
import { AgentClient, type ClientOptions } from './client.js';
import { abortReason, ConnectionError, TimeoutError } from './errors.js';

/** Longest key read from an agent's preface (UTF-8 bytes). */
export const MAX_KEY_BYTES = 1024;
const DEFAULT_PREFACE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_PENDING = 256;
const DEFAULT_MAX_IDLE_PER_AGENT = 16;
const DEFAULT_WAIT_MS = 10_000;
const KEEPALIVE_DELAY_MS = 10_000;
const DEFAULT_IDLE_LINK_MAX_AGE_MS = 60_000;

/** Who an agent is, from its key: a map (key → name) or a function (null: unknown). */
export type AgentKeys =
  | ReadonlyMap<string, string>
  | Readonly<Record<string, string>>
  | ((key: string, remote: string) => string | null | undefined | Promise<string | null | undefined>);

export interface AgentListenerOptions {
  /** PEM certificate (chain) agents verify, by thumbprint or trust store. */
  cert: string | Buffer;
  /** PEM private key of `cert`. */
  key: string | Buffer;
  /** Address to listen on (default all). */
  host?: string;
  /** Port (default 46336; 0 picks a free one). */
  port?: number;
  agents: AgentKeys;
  /** TLS handshake and preface, per connection (default 10 s). */
  prefaceTimeoutMs?: number;
  /** Connections still in TLS or preface at once; past it the oldest is closed (default 256). */
  maxPending?: number;
  /** Idle links kept per agent; more are closed (default 16). */
  maxIdlePerAgent?: number;
  /** Learn each agent's version on arrival with a handshake on its first link (default true). */
  probeVersion?: boolean;
  /**
   * An idle link older than this is closed (default 60 s; 0: never). An
   * Outpost agent replaces its idle links every ~20 s, so an older one is
   * from an agent that is gone (a vanished host leaves no FIN); an agent
   * that does not rotate simply dials again.
   */
  idleLinkMaxAgeMs?: number;
}

/** An agent that has dialed in. */
export interface OutboundAgent {
  name: string;
  /** Remote address of its newest link. */
  address: string;
  /** When its first link of this visit arrived. */
  since: Date;
  /** `major.minor.build.revision`, once a handshake has told it. */
  version: string | null;
  /** Links waiting to be used. */
  idle: number;
  /** Links in use. */
  active: number;
}

export interface AgentListenerEvents {
  arrive: [agent: OutboundAgent];
  leave: [agent: OutboundAgent];
  /** A connection that was refused (unknown key, bad preface, timeout): for logs. */
  refused: [info: { remote: string; reason: string }];
}

/** Options of {@link AgentListener.connect}: those of `AgentClient.connect` except where to connect. */
export type ListenerConnectOptions = Omit<
  ClientOptions,
  'host' | 'port' | 'link' | 'ca' | 'thumbprint' | 'insecure' | 'servername'
> & {
  /** How long to wait for an idle link of the agent, per connection (default: `timeoutMs`, else 10 s). */
  waitMs?: number;
};

interface AgentRecord {
  name: string;
  address: string;
  since: Date;
  version: string | null;
  idle: TLSSocket[];
  active: number;
  waiters: Set<{ resolve: (s: TLSSocket) => void; reject: (e: Error) => void }>;
}

export class AgentListener extends EventEmitter<AgentListenerEvents> {
  readonly #server: Server;
  readonly #options: Required<Omit<AgentListenerOptions, 'host' | 'port' | 'cert' | 'key' | 'agents'>>;
  readonly #agents = new Map<string, AgentRecord>();
  readonly #pending = new Set<TLSSocket>();
  /** Links handed out (to clients, splices, the version probe). */
  readonly #inUse = new Set<TLSSocket>();
  readonly #keys: AgentKeys;
  readonly #thumbprint: string;
  #address = { address: '', port: 0 };
  #sweeper: NodeJS.Timeout | null = null;
  /** When each idle link arrived. */
  readonly #idleSince = new WeakMap<TLSSocket, number>();
  #closed = false;

  private constructor(options: AgentListenerOptions) {
    super();
    this.#keys = options.agents;
    this.#thumbprint = thumbprintOfPem(options.cert);
    this.#options = {
      prefaceTimeoutMs: options.prefaceTimeoutMs ?? DEFAULT_PREFACE_TIMEOUT_MS,
      maxPending: options.maxPending ?? DEFAULT_MAX_PENDING,
      maxIdlePerAgent: options.maxIdlePerAgent ?? DEFAULT_MAX_IDLE_PER_AGENT,
      probeVersion: options.probeVersion ?? true,
      idleLinkMaxAgeMs: options.idleLinkMaxAgeMs ?? DEFAULT_IDLE_LINK_MAX_AGE_MS,
    };
    if (this.#options.idleLinkMaxAgeMs > 0) {
      this.#sweeper = setInterval(() => this.#sweep(), Math.max(50, this.#options.idleLinkMaxAgeMs / 4));
      this.#sweeper.unref();
    }
    this.#server = createServer({
      cert: options.cert,
      key: options.key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: this.#options.prefaceTimeoutMs,
    });
    this.#server.on('secureConnection', (s) => this.#onLink(s));
    this.#server.on('tlsClientError', () => {}); // a failed TLS handshake is the agent's to log
  }

  /** Listens; resolves once bound. Throws when the certificate or key is unusable, or the port is taken. */
  static async listen(options: AgentListenerOptions): Promise<AgentListener> {
    if (options === null || typeof options !== 'object')
      throw new TypeError('listen() needs an options object');
    if (!options.agents) throw new TypeError('agents must be a map of key → agent name, or a function');
    const listener = new AgentListener(options);
    await new Promise<void>((resolve, reject) => {
      listener.#server.once('error', reject);
      listener.#server.listen({ host: options.host, port: options.port ?? DEFAULT_PORT }, () => {
        listener.#server.off('error', reject);
        resolve();
      });
    });
    const a = listener.#server.address();
    if (a && typeof a === 'object') listener.#address = { address: a.address, port: a.port };
    return listener;
  }

  /** Where it listens. */
  get address(): { address: string; port: number } {
    return { ...this.#address };
  }

  /** SHA-256 thumbprint of the certificate (what agents put in `Thumbprint`). */
  get thumbprint(): string {
    return this.#thumbprint;
  }

  /** The agents connected now. */
  get agents(): OutboundAgent[] {
    return [...this.#agents.values()].map(describe);
  }

  /** One agent, if connected. */
  agent(name: string): OutboundAgent | undefined {
    const a = this.#agents.get(name);
    return a ? describe(a) : undefined;
  }

  /** Resolves once `name` has a link (at once if it has), or rejects after `timeoutMs`. */
  async waitFor(
    name: string,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<OutboundAgent> {
    const now = this.agent(name);
    if (now) return now;
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
      const cleanup = () => {
        clearTimeout(timer);
        this.off('arrive', onArrive);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const onArrive = (a: OutboundAgent) => {
        if (a.name !== name) return;
        cleanup();
        resolve(a);
      };
      const onAbort = () => {
        cleanup();
        reject(abortReason(options.signal!, `waiting for agent ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new TimeoutError(`agent ${name} did not dial in within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on('arrive', onArrive);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * An `AgentClient` for `name`, over its next idle link. Same API and errors
   * as a dialed one; with `reconnect`, a dropped link is replaced by the
   * agent's next one and the session resumes.
   */
  async connect(name: string, options: ListenerConnectOptions = {}): Promise<AgentClient> {
    if (typeof name !== 'string' || name === '') throw new TypeError('name must be the agent name');
    const { waitMs, ...rest } = options;
    const wait = waitMs ?? options.timeoutMs ?? DEFAULT_WAIT_MS;
    const client = await AgentClient.connect({
      ...rest,
      host: name,
      link: (signal) => this.take(name, { timeoutMs: wait, ...(signal ? { signal } : {}) }),
    });
    const a = this.#agents.get(name);
    if (a) a.version = client.agentVersion;
    return client;
  }

  /**
   * Takes the next idle link of `name` (waiting for one up to `timeoutMs`):
   * a TLS socket on which the agent waits for the 24-byte handshake. For
   * splicing a link elsewhere (the hub); `connect()` uses it.
   */
  take(name: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<TLSSocket> {
    if (this.#closed) return Promise.reject(new ConnectionError('CLOSED', 'the agent listener is closed'));
    const a = this.#agents.get(name);
    const now = a ? this.#takeIdle(a) : null;
    if (now) return Promise.resolve(now);
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    return new Promise<TLSSocket>((resolve, reject) => {
      const record = a ?? this.#record(name);
      const waiter = {
        resolve: (s: TLSSocket) => {
          cleanup();
          resolve(s);
        },
        reject: (e: Error) => {
          cleanup();
          reject(e);
        },
      };
      const cleanup = () => {
        clearTimeout(timer);
        record.waiters.delete(waiter);
        options.signal?.removeEventListener('abort', onAbort);
        this.#forgetIfEmpty(record);
      };
      const onAbort = () =>
        waiter.reject(abortReason(options.signal!, `waiting for a link of agent ${name}`));
      const timer = setTimeout(
        () =>
          waiter.reject(
            new ConnectionError(
              'NOT_CONNECTED',
              `agent ${name} has no idle link (not connected, or all its MaxConnections links are in use) after ${timeoutMs} ms; ` +
                `connected: ${this.#names() || 'none'}`,
              { retryable: true },
            ),
          ),
        timeoutMs,
      );
      record.waiters.add(waiter);
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Stops listening and closes every link (clients over them see the connection drop). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    const done = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#pending) s.destroy();
    for (const a of this.#agents.values()) {
      for (const w of [...a.waiters]) w.reject(new ConnectionError('CLOSED', 'the agent listener is closed'));
      for (const s of [...a.idle]) s.destroy();
    }
    // Links in use belong to their clients; end them so close() does not wait on them forever.
    for (const s of this.#inUse) s.destroy();
    await done;
  }

  /** Closes idle links past idleLinkMaxAgeMs (their 'close' updates the record). */
  #sweep(): void {
    const limit = Date.now() - this.#options.idleLinkMaxAgeMs;
    for (const a of this.#agents.values())
      for (const s of a.idle) if ((this.#idleSince.get(s) ?? 0) < limit) s.destroy();
  }

  #names(): string {
    return [...this.#agents.values()]
      .filter((a) => a.idle.length + a.active > 0)
      .map((a) => a.name)
      .join(', ');
  }

  #record(name: string): AgentRecord {
    let a = this.#agents.get(name);
    if (!a) {
      a = { name, address: '', since: new Date(), version: null, idle: [], active: 0, waiters: new Set() };
      this.#agents.set(name, a);
    }
    return a;
  }

  /** A record with no link and nobody waiting is dropped (the agent left, or never came). */
  #forgetIfEmpty(a: AgentRecord): void {
    if (a.idle.length + a.active === 0 && a.waiters.size === 0 && this.#agents.get(a.name) === a)
      this.#agents.delete(a.name);
  }

  #takeIdle(a: AgentRecord): TLSSocket | null {
    // Newest first: the oldest idle link is the next one its agent retires.
    while (a.idle.length > 0) {
      const s = a.idle.pop()!;
      if (s.destroyed || s.readableEnded) continue;
      a.active++;
      this.#inUse.add(s);
      return s;
    }
    return null;
  }

  #onLink(socket: TLSSocket): void {
    socket.on('error', () => {});
    if (this.#closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    const remote = socket.remoteAddress ?? '';
    if (this.#pending.size >= this.#options.maxPending) {
      const oldest = this.#pending.values().next().value as TLSSocket | undefined;
      if (oldest) {
        this.#pending.delete(oldest);
        oldest.destroy();
      }
    }
    this.#pending.add(socket);
    const abort = new AbortController();
    const timer = setTimeout(
      () =>
        abort.abort(new HandshakeError('TIMEOUT', `no preface within ${this.#options.prefaceTimeoutMs} ms`)),
      this.#options.prefaceTimeoutMs,
    );
    const refuse = (reason: string) => {
      this.#pending.delete(socket);
      socket.destroy(); // nothing written (§8)
      this.emit('refused', { remote, reason });
    };
    readPreface(socket, abort.signal)
      .then(async (key) => {
        const name = await this.#lookup(key, remote);
        clearTimeout(timer);
        if (abort.signal.aborted || socket.destroyed) return refuse('closed during the preface');
        if (!name) return refuse('unknown key');
        this.#pending.delete(socket);
        this.#adopt(name, socket, remote);
      })
      .catch((err: unknown) => {
        clearTimeout(timer);
        refuse(err instanceof Error ? err.message : String(err));
      });
  }

  async #lookup(key: string, remote: string): Promise<string | null> {
    const k = this.#keys;
    if (typeof k === 'function') return (await k(key, remote)) ?? null;
    if (k instanceof Map) return k.get(key) ?? null;
    return Object.hasOwn(k, key) ? ((k as Record<string, string>)[key] ?? null) : null;
  }

  #adopt(name: string, socket: TLSSocket, remote: string): void {
    const a = this.#record(name);
    const arriving = a.idle.length + a.active === 0;
    if (arriving) a.since = new Date();
    a.address = remote;
    socket.once('close', () => {
      const i = a.idle.indexOf(socket);
      if (i >= 0) a.idle.splice(i, 1);
      else if (this.#inUse.delete(socket)) a.active--;
      if (a.idle.length + a.active === 0 && this.#agents.get(name) === a) {
        if (a.waiters.size === 0) this.#agents.delete(name);
        else a.address = '';
        this.emit('leave', describe(a));
      }
    });
    const waiter = a.waiters.values().next().value;
    if (waiter) {
      a.waiters.delete(waiter);
      a.active++;
      this.#inUse.add(socket);
      waiter.resolve(socket);
    } else {
      this.#idleSince.set(socket, Date.now());
      a.idle.push(socket);
      while (a.idle.length > this.#options.maxIdlePerAgent) a.idle.shift()!.destroy();
    }
    if (!arriving) return;
    if (this.#options.probeVersion && a.version === null && a.waiters.size === 0) this.#probe(a);
    this.emit('arrive', describe(a));
  }

  /**
   * Learns an arriving agent's version: a handshake on one idle link (no
   * session is made without a frame), closed once the agent's next link is
   * in, so the agent never seems to leave.
   */
  #probe(a: AgentRecord): void {
    const s = this.#takeIdle(a);
    if (!s) return;
    s.write(encodeClientHello({ sessionId: 0 }));
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.#options.prefaceTimeoutMs);
    readExactly(s, 9, { signal: ac.signal, what: "agent's handshake reply" })
      .then((reply) => {
        a.version = formatVersion(reply.readInt32LE(5));
      })
      .catch(() => {})
      .finally(() => {
        clearTimeout(timer);
        const close = () => {
          clearInterval(poll);
          s.destroy();
        };
        // Wait (briefly) for the agent's next link before closing this one.
        let waited = 0;
        const poll = setInterval(() => {
          waited += 50;
          if (a.idle.length > 0 || waited >= 5000 || this.#closed) close();
        }, 50);
        poll.unref?.();
      });
  }
}

function describe(a: AgentRecord): OutboundAgent {
  return {
    name: a.name,
    address: a.address,
    since: a.since,
    version: a.version,
    idle: a.idle.length,
    active: a.active,
  };
}

/** Reads `Guid | int32 1000 | string key`, bounded: the key's length is checked before it is read. */
async function readPreface(socket: Socket, signal: AbortSignal): Promise<string> {
  const head = await readExactly(socket, 20, {
    signal,
    what: 'outbound preface',
    checkPrefix: isHelloPrefix,
  });
  const varint: Buffer[] = [];
  let length = 0;
  for (let i = 0; ; i++) {
    if (i >= 5) throw new HandshakeError('BAD_LENGTH', 'the key length is not a valid 7-bit varint');
    const b = await readExactly(socket, 1, { signal, what: 'outbound preface' });
    varint.push(b);
    length |= (b[0]! & 0x7f) << (7 * i);
    if ((b[0]! & 0x80) === 0) break;
    if (length > MAX_KEY_BYTES) break;
  }
  if (length > MAX_KEY_BYTES || length < 0)
    throw new HandshakeError('BAD_LENGTH', `the key is longer than ${MAX_KEY_BYTES} bytes`);
  const keyBytes =
    length === 0 ? Buffer.alloc(0) : await readExactly(socket, length, { signal, what: 'outbound key' });
  return decodeOutboundHello(Buffer.concat([head, ...varint, keyBytes]));
}
