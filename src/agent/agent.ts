/**
 * The agent: listener + sessions + meta commands + the product router.
 *
 *   const agent = await startAgent(config, logger);      // listening
 *   …
 *   await agent.close();                                // stops accepting, closes connections
 *
 * Per connection, requests are dispatched in arrival order: agent type 0 to
 * the meta handler, 1–3 to the product router, anything else is answered
 * `Error UnknownAgentType`. A message too short to carry a request header
 * (there is no token to answer) and any frame-level error close that
 * connection only.
 *
 * Backpressure: the agent stops reading a connection while its write buffer
 * is over the high-water mark, while MAX_META_IN_FLIGHT meta requests are
 * being worked on, or while the router has throttled it; it resumes when all
 * three clear. Nothing is queued without bound.
 */
import {
  AGENT_TYPE_NAMES,
  AgentType,
  decodeRequestHeader,
  ErrorKind,
  encodeError,
  isProductType,
  isProtocolError,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import { type AgentConfig, ConfigError } from './config.js';
import { Listener } from './listener.js';
import { type Logger, RateLimitedLog } from './log.js';
import { MetaHandler } from './meta.js';
import { describeAgentTypes, type ProductRouter, UnsupportedProductRouter } from './product.js';
import { type Session, SessionRegistry } from './sessions.js';

/** Meta requests worked on at once per connection before reading pauses. */
export const MAX_META_IN_FLIGHT = 32;
/** How long `close()` lets connections finish gracefully before destroying them. */
const SHUTDOWN_GRACE_MS = 2000;

export interface StartAgentOptions {
  /** Handles product messages (agent types 1–3); default: answers Error Unsupported. */
  router?: ProductRouter;
  /** Log lines per kind per second for floods (handshake failures, protocol errors). */
  logRatePerSecond?: number;
}

export interface AgentHandle {
  /** The address and port actually listened on (port is real even if the config said 0). */
  address: string;
  port: number;
  sessions: SessionRegistry;
  /** Open, established connections. */
  readonly connectionCount: number;
  /** Stops accepting, closes every connection (gracefully, then by force), closes the router. */
  close(): Promise<void>;
}

export async function startAgent(
  config: AgentConfig,
  logger: Logger,
  options: StartAgentOptions = {},
): Promise<AgentHandle> {
  if (!config.listener.enabled)
    throw new ConfigError('Listener/@Enabled', 'is "false": there is nothing to serve; set it to "true"');
  const router: ProductRouter = options.router ?? new UnsupportedProductRouter();
  const limiter = new RateLimitedLog(logger, options.logRatePerSecond ?? 20);
  const sessions = new SessionRegistry({
    idleTimeoutMs: config.sessionIdleTimeoutMs,
    detachedTimeoutMs: config.detachedSessionTimeoutMs,
  });
  const meta = new MetaHandler({ config, sessions, logger });
  const connections = new Set<AgentConnection>();

  sessions.on('close', (session, reason) => {
    limiter.info('session-closed', { session: session.id, reason }, 'session closed');
    try {
      router.sessionClosed(session, reason);
    } catch (err) {
      logger.error({ err }, 'product router failed on sessionClosed');
    }
  });

  const listener = new Listener({
    config: config.listener,
    logger,
    limiter,
    sessions,
    onEstablished: (connection, session) => {
      const c = new AgentConnection(connection, session, { sessions, meta, router, limiter, logger });
      connections.add(c);
      connection.once('close', () => connections.delete(c));
      try {
        router.connectionOpened?.(connection, session);
      } catch (err) {
        logger.error({ err }, 'product router failed on connectionOpened');
      }
    },
  });
  const bound = await listener.listen();

  let closing: Promise<void> | null = null;
  return {
    address: bound.address,
    port: bound.port,
    sessions,
    get connectionCount() {
      return connections.size;
    },
    close() {
      closing ??= (async () => {
        await Promise.all([
          listener.close(),
          (async () => {
            const all = [...connections].map((c) => c.closed);
            for (const c of connections) c.connection.close(SHUTDOWN_GRACE_MS);
            await Promise.all(all);
          })(),
        ]);
        sessions.dispose();
        await router.close();
      })();
      return closing;
    },
  };
}

interface ConnectionDeps {
  sessions: SessionRegistry;
  meta: MetaHandler;
  router: ProductRouter;
  limiter: RateLimitedLog;
  logger: Logger;
}

/** One established connection: dispatch and flow control. */
class AgentConnection {
  private inFlight = 0;
  private throttles = 0;
  readonly closed: Promise<void>;
  private readonly reply = (message: Buffer): boolean => {
    // Replies count as activity too: a session is idle only when nothing moves either way.
    this.deps.sessions.touch(this.session);
    const ok = this.connection.send(message);
    if (!ok) this.updateFlow();
    return ok;
  };

  constructor(
    readonly connection: FramedConnection,
    private readonly session: Session,
    private readonly deps: ConnectionDeps,
  ) {
    this.closed = new Promise((resolve) => connection.once('close', () => resolve()));
    connection.on('message', (m) => this.onMessage(m));
    connection.on('drain', () => this.updateFlow());
    connection.on('close', (err) => this.onClose(err));
  }

  private onMessage(message: Buffer): void {
    const { sessions, meta, router, logger } = this.deps;
    sessions.touch(this.session);
    let header: ReturnType<typeof decodeRequestHeader>;
    try {
      header = decodeRequestHeader(message);
    } catch (err) {
      // No token to answer: the peer does not speak the protocol.
      this.connection.destroy(err as Error);
      return;
    }
    if (header.agentType === AgentType.Meta) {
      this.inFlight++;
      void meta.handle(header, this.session, this.reply).finally(() => {
        this.inFlight--;
        this.updateFlow();
      });
    } else if (isProductType(header.agentType)) {
      try {
        router.handle({
          connection: this.connection,
          session: this.session,
          header,
          message,
          reply: this.reply,
          throttle: () => this.throttle(),
        });
      } catch (err) {
        logger.error({ err }, 'product router failed');
        this.reply(
          encodeError(
            header.agentType,
            header.token,
            ErrorKind.Internal,
            `${AGENT_TYPE_NAMES[header.agentType as AgentType]} request failed inside the agent`,
          ),
        );
      }
    } else {
      this.reply(
        encodeError(
          header.agentType,
          header.token,
          ErrorKind.UnknownAgentType,
          `unknown agent type ${header.agentType}: expected one of ${describeAgentTypes(true)}`,
        ),
      );
    }
    this.updateFlow();
  }

  private throttle(): () => void {
    this.throttles++;
    this.updateFlow();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.throttles--;
      this.updateFlow();
    };
  }

  private updateFlow(): void {
    const c = this.connection;
    if (c.closed) return;
    const hold = c.writableNeedDrain || this.inFlight >= MAX_META_IN_FLIGHT || this.throttles > 0;
    if (hold) c.pause();
    else c.resume();
  }

  private onClose(err: Error | undefined): void {
    const { sessions, router, limiter, logger } = this.deps;
    const c = this.connection;
    if (err && isProtocolError(err)) {
      const hint =
        err.code === 'DECRYPT_FAILED' ? ' (does the client use the same AES key as the agent?)' : '';
      limiter.warn(
        'protocol-error',
        { remote: c.remoteAddress, session: this.session.id, code: err.code, reason: err.message },
        `protocol error, connection closed${hint}`,
      );
    } else {
      limiter.info(
        'disconnected',
        { remote: c.remoteAddress, session: this.session.id, ...(err ? { reason: err.message } : {}) },
        'connection closed',
      );
    }
    sessions.detach(this.session, c);
    try {
      router.connectionClosed(c, this.session);
    } catch (e) {
      logger.error({ err: e }, 'product router failed on connectionClosed');
    }
  }
}
