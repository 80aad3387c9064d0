/**
 * Outbound mode (PROTOCOL.md §8): the agent dials the servers listed in
 * <Connections> and serves each link as if the server had connected.
 *
 * Per <Server> a `ServerLinks` keeps exactly one link *waiting* (being
 * dialed, or idle: TLS up, `Guid | int32 1000 | string key` sent, waiting
 * for the server's 24-byte hello). When the hello arrives the link is
 * *used*: it goes through the ordinary server-side handshake in mode 0
 * (acceptHandshake, the listener's own code) to the agent's connection
 * path, and the next link is dialed at once, up to MaxConnections.
 *
 * - No fallback: TLS ≥ 1.2 always; the certificate is verified by the
 *   pinned SHA-256 Thumbprint, else by the trust store with the host name.
 * - Backoff after a failure: full jitter, random(0, min(60 s, 1 s·2^(n-1)))
 *   for the n-th failure in a row; the host name is resolved on every
 *   attempt (net.connect looks it up each time; Node caches nothing).
 *   A link that gets used resets the count.
 * - Dead idle links: Node 20 (libuv 1.46) sets only TCP_KEEPIDLE, so with
 *   Linux's default 75 s × 9 probes keep-alive alone takes > 11 min. An idle
 *   link is therefore *rotated*: after IDLE_LIFETIME_MS a replacement is
 *   dialed and the old link closed once the replacement is up (or failed),
 *   make-before-break, so the server always sees the agent. A dead path is
 *   so noticed within IDLE_LIFETIME_MS + DIAL_TIMEOUT_MS (≤ 30 s). The
 *   protocol leaves the agent nothing else to send on an idle link.
 * - Exempt from the listener's handshake caps and HandshakeTimeout (§6): the
 *   wait for the server's hello has no deadline; dialing (TCP + TLS) has one.
 * - Every failure is one log line naming the server and what to fix.
 */
import { isIP } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { encodeOutboundHello } from '../protocol/index.js';
import {
  acceptHandshake,
  formatThumbprint,
  HandshakeError,
  normalizeThumbprint,
  thumbprintOfDer,
} from '../transport/index.js';
import type { OutboundServerConfig } from './config.js';
import type { UnfinishedConnection } from './listener.js';
import { plainAddress } from './listener.js';
import type { Logger } from './log.js';
import { outboundPrincipal, type SessionRegistry } from './sessions.js';

/** An idle link older than this is replaced (see the file header). */
export const IDLE_LIFETIME_MS = 20_000;
/** TCP connect + TLS handshake, per attempt. */
export const DIAL_TIMEOUT_MS = 10_000;
const KEEPALIVE_DELAY_MS = 10_000;
/** A link the server closes this soon after the key was sent counts as a refusal. */
const REFUSAL_WINDOW_MS = 5_000;

export interface BackoffPolicy {
  /** First delay's upper bound (default 1 s). */
  baseMs: number;
  /** Cap (default 60 s). */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, maxMs: 60_000 };

/** Full-jitter delay for the `failures`-th failure in a row (0: none yet → no delay). */
export function backoffDelay(failures: number, policy: BackoffPolicy, random = Math.random): number {
  if (failures <= 0) return 0;
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(failures - 1, 30));
  return Math.floor(random() * ceiling);
}

export interface OutboundOptions {
  backoff?: BackoffPolicy;
  /** Rotation age of an idle link (default IDLE_LIFETIME_MS). */
  idleLifetimeMs?: number;
}

export interface OutboundDeps {
  servers: OutboundServerConfig[];
  logger: Logger;
  sessions: SessionRegistry;
  agentVersion: number;
  maxMessageSize: number;
  onHandshake(unfinished: UnfinishedConnection): void;
  options?: OutboundOptions;
}

/** What `status()` reports per server. */
export interface ServerStatus {
  server: string;
  /** Links waiting for the server (dialing or idle). */
  waiting: number;
  /** Links the server is using. */
  used: number;
  /** Failures in a row (0 when the last attempt worked). */
  failures: number;
  /** The last failure, as logged. */
  lastError: string | null;
}

export class OutboundDialer {
  private readonly servers: ServerLinks[];

  constructor(deps: OutboundDeps) {
    this.servers = deps.servers.map((s) => new ServerLinks(s, deps));
  }

  start(): void {
    for (const s of this.servers) s.ensure();
  }

  status(): ServerStatus[] {
    return this.servers.map((s) => s.status());
  }

  /** Stops dialing and closes the links the servers are not using (used ones close with their connections). */
  close(): void {
    for (const s of this.servers) s.close();
  }
}

type LinkState = 'dialing' | 'idle' | 'retiring' | 'used';

interface Link {
  state: LinkState;
  socket: TLSSocket | null;
  /** When the key was sent (idle since). */
  idleSince: number;
  rotateTimer: NodeJS.Timeout | null;
}

class ServerLinks {
  private readonly links = new Set<Link>();
  private failures = 0;
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly backoff: BackoffPolicy;
  private readonly idleLifetimeMs: number;
  private readonly principal: string;

  constructor(
    private readonly server: OutboundServerConfig,
    private readonly deps: OutboundDeps,
  ) {
    this.backoff = deps.options?.backoff ?? DEFAULT_BACKOFF;
    this.idleLifetimeMs = deps.options?.idleLifetimeMs ?? IDLE_LIFETIME_MS;
    this.principal = outboundPrincipal(server.key.reveal());
  }

  status(): ServerStatus {
    let waiting = 0;
    let used = 0;
    for (const l of this.links) {
      if (l.state === 'used') used++;
      else if (l.state !== 'retiring') waiting++;
    }
    return { server: this.server.label, waiting, used, failures: this.failures, lastError: this.lastError };
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const l of this.links) {
      if (l.rotateTimer) clearTimeout(l.rotateTimer);
      if (l.state !== 'used') l.socket?.destroy();
    }
  }

  /** Keeps one link waiting, within MaxConnections; dials after the backoff delay (once waited: at once). */
  ensure(waited = false): void {
    if (this.closed || this.retryTimer) return;
    let waiting = 0;
    let total = 0;
    for (const l of this.links) {
      if (l.state !== 'retiring') total++;
      if (l.state === 'dialing' || l.state === 'idle') waiting++;
    }
    if (waiting > 0 || total >= this.server.maxConnections) return;
    const delay = waited ? 0 : backoffDelay(this.failures, this.backoff);
    if (delay === 0) {
      this.dial();
      return;
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.ensure(true);
    }, delay);
    this.retryTimer.unref?.();
  }

  private fail(message: string, fields: Record<string, unknown> = {}): void {
    this.failures++;
    this.lastError = message;
    this.deps.logger.warn(
      { server: this.server.label, failures: this.failures, ...fields },
      `outbound link to ${this.server.label}: ${message}`,
    );
  }

  private dial(): void {
    const link: Link = { state: 'dialing', socket: null, idleSince: 0, rotateTimer: null };
    this.links.add(link);
    const { host, port, thumbprint } = this.server;
    const at = 'Connections/Server';
    let settled = false;
    let socket: TLSSocket;
    try {
      socket = tlsConnect({
        host,
        port,
        ...(isIP(host) ? {} : { servername: host }),
        minVersion: 'TLSv1.2',
        // Pinned: the thumbprint is checked below instead of the trust store (never neither).
        rejectUnauthorized: thumbprint === null,
        ...(thumbprint !== null ? { checkServerIdentity: () => undefined } : {}),
      });
    } catch (err) {
      this.links.delete(link);
      this.fail(`cannot dial (${(err as Error).message}); check ${at}/@Host`);
      this.ensure();
      return;
    }
    link.socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      this.fail(
        `no TCP connection and TLS handshake within ${DIAL_TIMEOUT_MS / 1000} s; check that ${this.server.label} is reachable from here (firewall, ${at}/@Host)`,
      );
      socket.destroy();
    }, DIAL_TIMEOUT_MS);

    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.fail(describeDialError(err, this.server), { code: err.code });
    });
    socket.once('secureConnect', () => {
      if (settled) return;
      if (thumbprint !== null) {
        const der = socket.getPeerX509Certificate()?.raw;
        const presented = der ? thumbprintOfDer(der) : '(none)';
        if (!der || normalizeThumbprint(presented) !== thumbprint) {
          settled = true;
          clearTimeout(timer);
          this.fail(
            `certificate thumbprint mismatch: the server presented ${presented}, ${at}/@Thumbprint expects ${formatThumbprint(thumbprint)}; ` +
              'set Thumbprint to the one `outpost hub init` printed for this server, or check that nobody is in between',
            { presented, expected: formatThumbprint(thumbprint) },
          );
          socket.destroy();
          return;
        }
      }
      settled = true;
      clearTimeout(timer);
      socket.write(encodeOutboundHello(this.server.key.reveal()));
      link.state = 'idle';
      link.idleSince = Date.now();
      this.scheduleRotation(link);
      this.retireOthers();
      this.serve(link, socket);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      if (link.rotateTimer) clearTimeout(link.rotateTimer);
      const was = link.state;
      this.links.delete(link);
      if (this.closed) return; // shutting down: nothing to report or redial
      if (!settled) {
        settled = true;
        this.fail(
          `the server closed the connection during the TLS handshake; is ${this.server.label} an Outpost hub or orchestrator?`,
        );
      } else if (was === 'idle') {
        const idleFor = Date.now() - link.idleSince;
        if (idleFor < REFUSAL_WINDOW_MS)
          this.fail(
            `the server closed the link right after the key was sent: it does not know this agent's key (${at}/@Key); ` +
              "add it to the server's agents (`outpost hub key NAME` on the hub), or the server is shutting down",
          );
        else {
          // An idle link the server dropped after a while (restart, idle policy): one jittered redial.
          this.failures = 0;
          this.fail('the server closed an idle link; dialing again');
        }
      }
      this.retireOthers();
      this.ensure();
    });
  }

  /** Waits (without deadline: §6) for the server's hello, then hands the link to the agent. */
  private serve(link: Link, socket: TLSSocket): void {
    let requested = 0;
    acceptHandshake(socket, {
      mode: 'none',
      maxMessageSize: this.deps.maxMessageSize,
      agentVersion: this.deps.agentVersion,
      grantSession: (hello) => {
        requested = hello.sessionId;
        return this.deps.sessions.proposeId(hello.sessionId);
      },
    }).then(
      ({ connection, sessionId }) => {
        if (this.closed || socket.destroyed) {
          connection.destroy();
          return;
        }
        const wasRetiring = link.state === 'retiring';
        link.state = 'used';
        if (link.rotateTimer) clearTimeout(link.rotateTimer);
        this.failures = 0;
        this.lastError = null;
        if (!wasRetiring) this.ensure();
        this.deps.onHandshake({
          connection,
          remote: plainAddress(socket.remoteAddress ?? this.server.host),
          requestedSessionId: requested,
          sessionId,
          principal: this.principal,
          finish: () => {},
        });
      },
      (err: unknown) => {
        // Closed while idle: the 'close' handler tells why.
        if (socket.destroyed || this.closed) return;
        if (err instanceof HandshakeError && (err.code === 'CLOSED' || err.code === 'SOCKET_ERROR')) return;
        const why = err instanceof HandshakeError ? err.message : String(err);
        this.fail(
          `the server sent something other than the protocol handshake (${why}); is it an Outpost hub?`,
        );
        link.state = 'retiring'; // not a refusal: the failure is counted already
        socket.destroy();
      },
    );
  }

  /** After IDLE_LIFETIME_MS an idle link is replaced, make-before-break. */
  private scheduleRotation(link: Link): void {
    const jitter = Math.floor(Math.random() * (this.idleLifetimeMs / 10));
    link.rotateTimer = setTimeout(() => {
      link.rotateTimer = null;
      const s = link.socket;
      if (link.state !== 'idle' || !s || s.readableLength > 0) return;
      link.state = 'retiring';
      this.ensure();
    }, this.idleLifetimeMs - jitter);
    link.rotateTimer.unref?.();
  }

  /** Closes retiring links once their replacement is up or has failed. */
  private retireOthers(): void {
    for (const l of this.links)
      if (l.state === 'retiring' && l.socket?.readableLength === 0) l.socket.destroy();
  }
}

function describeDialError(err: NodeJS.ErrnoException, server: OutboundServerConfig): string {
  const code = err.code ?? '';
  const at = 'Connections/Server';
  switch (code) {
    case 'ECONNREFUSED':
      return `unreachable: connection refused at ${server.label}; is the hub running there (\`outpost hub\`)? check ${at}/@Host`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `unreachable: cannot resolve ${server.host} (${code}); check ${at}/@Host and DNS`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `unreachable: ${server.label} (${code}); check the network and firewalls between here and there`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `the connection to ${server.label} was reset (${code}); is it an Outpost hub, and does it accept TLS?`;
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'CERT_HAS_EXPIRED':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the server's certificate is not trusted (${code}: ${err.message}); pin it with ${at}/@Thumbprint (\`outpost hub init\` prints it) or add its CA to the trust store`;
    default:
      if (code.startsWith('ERR_SSL') || /ssl|tls/i.test(err.message))
        return `TLS with ${server.label} failed (${err.message}); the server must speak TLS 1.2 or later`;
      return `cannot dial ${server.label} (${code || err.message}); check ${at}/@Host`;
  }
}
