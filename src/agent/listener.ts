/**
 * The TCP listener: accepts connections, filters them by address, admits
 * them into the handshake (see admission.ts), runs the handshake under
 * HandshakeTimeout, binds the connection to a session and hands it on.
 *
 * Order for every accepted socket:
 *   1. AllowedAddresses (net.BlockList; IPv4-mapped IPv6 peers are checked as
 *      IPv4 too) — refused sockets are destroyed before a byte is read
 *      (the server uses pauseOnConnect);
 *   2. the HandshakeTimeout clock starts (it covers waiting for admission);
 *   3. admission (MaxConcurrentHandshakes);
 *   4. the handshake; failures close the socket and are logged, rate-limited.
 */
import { BlockList, createServer, isIP, type Server, type Socket } from 'node:net';
import { isProtocolError } from '../protocol/index.js';
import { acceptHandshake, type FramedConnection, HandshakeError } from '../transport/index.js';
import { HandshakeAdmission } from './admission.js';
import { type AddressRule, ConfigError, type ListenerConfig } from './config.js';
import type { Logger, RateLimitedLog } from './log.js';
import { aesPrincipal, type Session, SessionMismatchError, type SessionRegistry } from './sessions.js';

const KEEPALIVE_DELAY_MS = 30_000;
/** How long a handshake may run before a newcomer may evict it when all slots are taken. */
export function stallGraceMs(handshakeTimeoutMs: number): number {
  return Math.min(1000, Math.max(50, Math.floor(handshakeTimeoutMs / 4)));
}

export interface ListenerDeps {
  config: ListenerConfig;
  logger: Logger;
  limiter: RateLimitedLog;
  sessions: SessionRegistry;
  onEstablished(connection: FramedConnection, session: Session, resumed: boolean): void;
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
  private readonly admission: HandshakeAdmission;
  private readonly allowed: ((address: string) => boolean) | null;
  private readonly handshaking = new Set<Socket>();
  private closing = false;

  constructor(private readonly deps: ListenerDeps) {
    const c = deps.config;
    this.allowed = buildAddressFilter(c.allowedAddresses);
    this.admission = new HandshakeAdmission({
      max: c.maxConcurrentHandshakes,
      graceMs: stallGraceMs(c.handshakeTimeoutMs),
    });
    this.server = createServer({
      pauseOnConnect: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
    });
    this.server.on('connection', (socket) => this.onConnection(socket));
    this.server.on('error', (err) => deps.logger.error({ err }, 'listener error'));
  }

  /** Number of connections in the handshake (running or waiting). */
  get handshakeCount(): number {
    return this.handshaking.size;
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
        const a = this.server.address();
        if (a === null || typeof a === 'string') resolve({ address, port });
        else resolve({ address: a.address, port: a.port });
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host: address, port, exclusive: true });
    });
  }

  /** Stops accepting and drops connections still in their handshake. */
  async close(): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.handshaking) s.destroy();
    this.handshaking.clear();
    this.admission.clear();
    await closed;
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => {}); // failures surface as 'close'; never as an uncaught error
    const remote = plainAddress(socket.remoteAddress ?? '');
    const { limiter, config } = this.deps;
    if (this.closing || remote === '') {
      socket.destroy();
      return;
    }
    if (this.allowed && !this.allowed(socket.remoteAddress!)) {
      socket.destroy();
      limiter.warn(
        'address-refused',
        { remote },
        'connection refused: address not in Listener/AllowedAddresses',
      );
      return;
    }

    this.handshaking.add(socket);
    const abort = new AbortController();
    let started = false;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      this.handshaking.delete(socket);
      if (ticket) this.admission.done(ticket);
    };
    const timer = setTimeout(
      () =>
        abort.abort(
          new HandshakeError('TIMEOUT', `no complete handshake within ${config.handshakeTimeoutMs} ms`),
        ),
      config.handshakeTimeoutMs,
    );
    socket.once('close', () => {
      if (!started) finish();
    });
    abort.signal.addEventListener('abort', () => {
      if (started) return; // the running handshake sees the abort and fails
      const reason = (abort.signal.reason as Error).message;
      limiter.warn('handshake-failed', { remote, reason }, 'handshake failed');
      socket.destroy();
      finish();
    });
    const ticket = this.admission.admit(
      () => {
        started = true;
        this.handshake(socket, remote, abort.signal, finish).catch((err: unknown) => {
          // A bug, not bad input: log it and drop this connection; the agent keeps running.
          this.deps.logger.error({ err, remote }, 'internal error while setting up a connection');
          socket.destroy();
          finish();
        });
      },
      () =>
        abort.abort(new HandshakeError('EVICTED', 'handshake stalled while others were waiting; evicted')),
    );
    if (!ticket) {
      limiter.warn(
        'handshake-refused',
        { remote },
        'connection refused: too many handshakes in progress (Listener/MaxConcurrentHandshakes)',
      );
      socket.destroy();
      finish();
    }
  }

  private async handshake(
    socket: Socket,
    remote: string,
    signal: AbortSignal,
    finish: () => void,
  ): Promise<void> {
    const { config, sessions, limiter } = this.deps;
    const enc = config.encryption;
    let principal: string | undefined =
      enc.mode === 'aes'
        ? aesPrincipal(enc.key!.reveal())
        : enc.mode === 'none'
          ? `addr:${remote}`
          : undefined;
    let result: Awaited<ReturnType<typeof acceptHandshake>>;
    try {
      result = await acceptHandshake(socket, {
        mode: enc.mode,
        key: enc.key?.reveal(),
        secureContext: enc.secureContext ?? undefined,
        requestCert: true,
        maxMessageSize: config.maxMessageSize,
        signal,
        grantSession: (hello) => sessions.proposeId(hello.sessionId, principal),
      });
    } catch (err) {
      finish();
      socket.destroy();
      const reason = signal.aborted ? (signal.reason as Error).message : describeHandshakeError(err);
      limiter.warn('handshake-failed', { remote, reason }, 'handshake failed');
      return;
    }
    finish();
    const { connection, sessionId, peerCertificate } = result;
    if (this.closing) {
      connection.destroy();
      return;
    }
    if (enc.mode === 'ssl')
      principal = peerCertificate ? `tls-cert:${peerCertificate.fingerprint256}` : `tls-addr:${remote}`;
    let attached: { session: Session; resumed: boolean };
    try {
      attached = sessions.attach(sessionId, principal!, connection);
    } catch (err) {
      if (!(err instanceof SessionMismatchError)) throw err;
      limiter.warn(
        'session-refused',
        { remote, sessionId },
        'resume refused: the session belongs to another client',
      );
      connection.destroy();
      return;
    }
    limiter.info(
      'connected',
      { remote, mode: enc.mode, session: sessionId, resumed: attached.resumed },
      attached.resumed ? 'connection resumed a session' : 'connection opened a session',
    );
    this.deps.onEstablished(connection, attached.session, attached.resumed);
  }
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
