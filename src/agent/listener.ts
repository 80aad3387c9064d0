/**
 * The TCP listener: accepts connections, filters them by address, counts
 * them against the handshake caps, runs the handshake, and hands the
 * connection on — still *unfinished* — to the agent, which finishes it at
 * its first valid frame (agent.ts).
 *
 * Order for every accepted socket:
 *   1. AllowedAddresses (net.BlockList; IPv4-mapped IPv6 peers are checked as
 *      IPv4 too) — refused sockets are destroyed before a byte is read
 *      (the server uses pauseOnConnect);
 *   2. the HandshakeTimeout clock starts: it covers everything up to the
 *      first valid frame (§2);
 *   3. the caps (admission.ts) count it until then, and may close it to make
 *      room for a newcomer;
 *   4. the handshake (24-byte hello, reply, TLS in mode ssl); failures close
 *      the socket with nothing more written and are logged, rate-limited.
 */
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import { isProtocolError, type ReplayCache } from '../protocol/index.js';
import {
  acceptHandshake,
  BULK_HIGH_WATER_MARK,
  type FramedConnection,
  HandshakeError,
} from '../transport/index.js';
import { type AdmissionTicket, HandshakeCaps } from './admission.js';
import { type AddressRule, ConfigError, type ListenerConfig } from './config.js';
import type { Logger, RateLimitedLog } from './log.js';
import type { AgentObserver } from './observe.js';
import { addressPrincipal, aesPrincipal, type SessionRegistry } from './sessions.js';

const KEEPALIVE_DELAY_MS = 30_000;

/** What the agent gets with a connection whose handshake is done but which has sent no valid frame yet. */
export interface UnfinishedConnection {
  connection: FramedConnection;
  /** Remote address (IPv4-mapped IPv6 as IPv4). */
  remote: string;
  /** The ID the hello asked for (0: a new session). */
  requestedSessionId: number;
  /** The ID granted in the reply. */
  sessionId: number;
  /** The connection's principal (§2). */
  principal: string;
  /**
   * The first valid frame arrived: stop counting this connection against the
   * caps and HandshakeTimeout. Idempotent.
   */
  finish(): void;
}

export interface ListenerDeps {
  config: ListenerConfig;
  logger: Logger;
  limiter: RateLimitedLog;
  sessions: SessionRegistry;
  /** Packed agent version for the handshake reply. */
  agentVersion: number;
  /** The process-wide replay cache (mode aes; null otherwise). */
  replay: ReplayCache | null;
  /** Told of accepted connections, their bytes, and rejections by reason. */
  observer?: AgentObserver | undefined;
  onHandshake(unfinished: UnfinishedConnection): void;
}

/** Builds the address filter; null when every address is allowed. */
export function buildAddressFilter(rules: AddressRule[]): ((address: string) => boolean) | null {
  if (rules.length === 0) return null;
  const list = new BlockList();
  for (const r of rules) {
    if (r.prefix === undefined) list.addAddress(r.address, r.family);
    else list.addSubnet(r.address, r.prefix, r.family);
  }
  return (address: string) => {
    const v = isIP(address);
    if (v === 4) return list.check(address, 'ipv4');
    if (v !== 6) return false;
    if (list.check(address, 'ipv6')) return true;
    const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    return m !== null && list.check(m[1]!, 'ipv4');
  };
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; other addresses unchanged. */
export function plainAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

export class Listener {
  private readonly server: Server;
  readonly caps: HandshakeCaps;
  private allowed: ((address: string) => boolean) | null;
  /** Sockets not yet past their first valid frame, to drop on close. */
  private readonly unfinished = new Set<Socket>();
  private readonly principalOfKey: string | null;
  private closing = false;

  constructor(private deps: ListenerDeps) {
    const c = deps.config;
    this.allowed = buildAddressFilter(c.allowedAddresses);
    this.caps = new HandshakeCaps({
      maxTotal: c.maxConcurrentHandshakes,
      maxPerAddress: c.maxHandshakesPerAddress,
    });
    this.principalOfKey = c.encryption.mode === 'aes' ? aesPrincipal(c.encryption.key!.reveal()) : null;
    this.server = createServer({
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
      highWaterMark: BULK_HIGH_WATER_MARK,
    });
    this.server.on('connection', (socket) => this.onConnection(socket));
  }

  /**
   * Reload: AllowedAddresses, the caps, HandshakeTimeout, MaxMessageSize and
   * the TLS certificate and key apply to connections accepted from now on;
   * connections already accepted keep what they started with. (Address,
   * port, mode and AES key need a restart: the caller refuses to change them here.)
   */
  update(config: ListenerConfig): void {
    this.deps = { ...this.deps, config };
    this.allowed = buildAddressFilter(config.allowedAddresses);
    this.caps.setLimits({
      maxTotal: config.maxConcurrentHandshakes,
      maxPerAddress: config.maxHandshakesPerAddress,
    });
  }

  /** The settings in force (the latest reload). */
  get config(): ListenerConfig {
    return this.deps.config;
  }

  /** Connections accepted and not yet past their first valid frame. */
  get handshakeCount(): number {
    return this.unfinished.size;
  }

  /** Starts listening; errors are ConfigErrors that say what to change. */
  listen(): Promise<{ address: string; port: number }> {
    const { address, port } = this.deps.config;
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        this.server.off('listening', onListening);
        reject(listenError(err, address, port));
      };
      const onListening = () => {
        this.server.off('error', onError);
        // Only now: an error while starting is the one line listen() rejects with, not a logged stack first.
        this.server.on('error', (err) => this.deps.logger.error({ err }, 'listener error'));
        const a = this.server.address();
        if (a === null || typeof a === 'string') resolve({ address, port });
        else resolve({ address: a.address, port: a.port });
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host: address, port, exclusive: true });
    });
  }

  /** Stops accepting and drops connections that have not finished their handshake. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.unfinished) s.destroy();
    this.unfinished.clear();
    this.caps.clear();
    await closed;
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => {}); // failures surface as 'close'; never as an uncaught error
    const remote = plainAddress(socket.remoteAddress ?? '');
    const { limiter, config, observer } = this.deps;
    if (this.closing || remote === '') {
      socket.destroy();
      return;
    }
    if (this.allowed && !this.allowed(socket.remoteAddress!)) {
      socket.destroy();
      observer?.rejected?.('address');
      limiter.warn(
        'address-refused',
        { remote },
        'connection refused: address not in Listener/AllowedAddresses',
      );
      return;
    }

    if (observer) {
      observer.connectionOpened?.(socket);
      socket.once('close', () => observer.connectionClosed?.(socket));
    }
    this.unfinished.add(socket);
    const abort = new AbortController();
    // The TLS socket once there is one; destroying it closes the raw socket too.
    let current: { destroy(): void } = socket;
    let ticket: AdmissionTicket | null = null;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.unfinished.delete(socket);
      if (ticket) this.caps.release(ticket);
    };
    const fail = (kind: string, reason: string) => {
      if (finished) return;
      finish();
      observer?.rejected?.(kind.toLowerCase());
      abort.abort(new HandshakeError(kind, reason));
      current.destroy();
      socket.destroy();
      limiter.warn('handshake-failed', { remote, reason }, 'handshake failed');
    };
    const timer = setTimeout(
      () => fail('TIMEOUT', `no valid first frame within ${config.handshakeTimeoutMs} ms of the accept`),
      config.handshakeTimeoutMs,
    );
    socket.once('close', finish);
    ticket = this.caps.admit(remote, () =>
      fail(
        'EVICTED',
        'closed to make room under Listener/MaxConcurrentHandshakes or MaxHandshakesPerAddress',
      ),
    );
    this.handshake(socket, remote, abort.signal, finish, (c) => {
      current = c;
    }).catch((err: unknown) => {
      // A bug, not bad input: log it and drop this connection; the agent keeps running.
      this.deps.logger.error({ err, remote }, 'internal error while setting up a connection');
      finish();
      current.destroy();
      socket.destroy();
    });
  }

  private async handshake(
    socket: Socket,
    remote: string,
    signal: AbortSignal,
    finish: () => void,
    established: (c: FramedConnection) => void,
  ): Promise<void> {
    const { config, sessions, limiter } = this.deps;
    const enc = config.encryption;
    let requested = 0;
    let result: Awaited<ReturnType<typeof acceptHandshake>>;
    try {
      result = await acceptHandshake(socket, {
        mode: enc.mode,
        key: enc.key?.reveal(),
        secureContext: enc.secureContext ?? undefined,
        maxMessageSize: config.maxMessageSize,
        agentVersion: this.deps.agentVersion,
        replay: this.deps.replay ?? undefined,
        signal,
        grantSession: (hello) => {
          requested = hello.sessionId;
          return sessions.proposeId(hello.sessionId);
        },
      });
    } catch (err) {
      if (signal.aborted) return; // timed out or evicted: already closed and logged
      finish();
      socket.destroy();
      this.deps.observer?.rejected?.(handshakeReason(err));
      limiter.warn('handshake-failed', { remote, reason: describeHandshakeError(err) }, 'handshake failed');
      return;
    }
    const { connection, sessionId } = result;
    if (this.closing || signal.aborted || socket.destroyed) {
      connection.destroy();
      finish();
      return;
    }
    established(connection);
    this.deps.onHandshake({
      connection,
      remote,
      requestedSessionId: requested,
      sessionId,
      principal: this.principalOfKey ?? addressPrincipal(remote),
      finish,
    });
  }
}

/** A short stable word for a failed handshake (status and metrics labels). */
function handshakeReason(err: unknown): string {
  if (isProtocolError(err)) return err.code.toLowerCase();
  if (err instanceof HandshakeError) return err.code.toLowerCase();
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /SSL|TLS/i.test(code)) return 'tls';
  return 'other';
}

function describeHandshakeError(err: unknown): string {
  if (isProtocolError(err)) return `${err.code}: ${err.message}`;
  if (err instanceof HandshakeError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

function listenError(err: NodeJS.ErrnoException, address: string, port: number): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new ConfigError(
        'Listener/Port',
        `port ${port} on ${address} is already in use; stop the other program or choose another port`,
      );
    case 'EACCES':
      return new ConfigError(
        'Listener/Port',
        `not allowed to listen on port ${port} (ports below 1024 need privileges)`,
      );
    case 'EADDRNOTAVAIL':
      return new ConfigError('Listener/Address', `${address} is not an address of this machine`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError('Listener/Address', `cannot resolve ${address}`);
    default:
      return new ConfigError('Listener', `cannot listen on ${address}:${port} (${err.code ?? err.message})`);
  }
}
