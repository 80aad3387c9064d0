/**
 * The agent: listener + sessions + meta commands + the product router.
 *
 *   const agent = await startAgent(config, logger);      // listening
 *   …
 *   await agent.close();                                // stops accepting, closes connections
 *
 * A connection is *unfinished* from the accept until its first valid frame
 * (PROTOCOL.md §2, §3, §6, §7): one that decrypts, is a well-formed request
 * (`requestProblem` is null) and, for a product message, carries a token
 * that is not reserved in its session. Until then:
 *   - mode aes: every failure closes the connection silently — destroyed,
 *     nothing written, the same whatever the cause (no padding oracle);
 *   - modes none/ssl: a frame that is not valid gets its ordinary answer
 *     (MetaError, Error Unsupported, Error InvalidArgument) from the agent
 *     itself, without a session, and the connection stays unfinished;
 *   - a connection whose principal does not match the session it asked for
 *     is closed at its first frame, without an answer.
 * At the first valid frame the session is created or joined (counted
 * against its limit, able to displace another), the frame is dispatched,
 * and then the router may send the session's buffered events.
 *
 * Dispatch, in arrival order: agent type 0 → meta (answered in order, one at
 * a time per connection); 1–3 → the product router; anything else →
 * MetaError carrying the frame's command, connection kept. Product data
 * shorter than a token, and meta arguments that do not decode, are protocol
 * errors: that connection closes.
 *
 * Backpressure: the agent stops reading a connection while its write buffer
 * is over the high-water mark, while MAX_META_QUEUED meta requests wait, or
 * while the router has throttled it; it resumes when all three clear.
 */
import {
  AGENT_TYPE_NAMES,
  AgentType,
  type ClientMessage,
  decodeClientMessage,
  decodeMetaArgs,
  ErrorKind,
  encodeError,
  encodeMetaError,
  encodeUnknownCommand,
  isProductType,
  isProtocolError,
  joinPieces,
  type MetaCommand,
  metaCommandName,
  type Pieces,
  ProtocolError,
  parseVersion,
  productCommandName,
  ReplayCache,
  type RequestProblem,
  readToken,
  requestProblem,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import { type AgentConfig, ConfigError } from './config.js';
import { Listener, type UnfinishedConnection } from './listener.js';
import { type Logger, RateLimitedLog } from './log.js';
import { MetaHandler } from './meta.js';
import { type AgentObserver, combineObservers, RejectionCounts } from './observe.js';
import { OutboundDialer, type OutboundOptions, type ServerStatus } from './outbound.js';
import { describeAgentTypes, type ProductRouter, UnsupportedProductRouter } from './product.js';
import { mergeReload, type ReloadPlan } from './reload.js';
import { type Session, SessionLimitError, SessionMismatchError, SessionRegistry } from './sessions.js';
import { type AgentStatus, describeSessions, type OutboundLinkStatus, type SessionDetail } from './status.js';
import { AGENT_VERSION } from './version.js';

/** Meta requests waiting per connection before reading pauses. */
export const MAX_META_QUEUED = 32;
/** How long `close()` lets connections finish gracefully before destroying them. */
const SHUTDOWN_GRACE_MS = 2000;

let processReplayCache: ReplayCache | null = null;
/** The one replay cache of this process (§3: across all connections); made on first use. */
export function replayCache(): ReplayCache {
  processReplayCache ??= new ReplayCache();
  return processReplayCache;
}

export interface StartAgentOptions {
  /** Handles product messages (agent types 1–3); default: answers Error Unsupported. */
  router?: ProductRouter;
  /** Log lines per kind per second for floods (handshake failures, protocol errors). */
  logRatePerSecond?: number;
  /** Sessions at once (default 10 000). */
  maxSessions?: number;
  /** Outbound mode tuning (backoff, idle-link rotation); tests shorten them. */
  outbound?: OutboundOptions;
  /** Metrics, audit: told of connections, rejections, sessions (the router is given its own). */
  observer?: AgentObserver | undefined;
}

/** What a router may offer beyond routing: reload and status (HostRouter does). */
interface OperableRouter extends ProductRouter {
  updateConfig?(config: AgentConfig): void;
  describeSession?(sessionId: number): SessionDetail;
  readonly hostCount?: number;
}

export interface AgentHandle {
  /** The address and port actually listened on (port is real even if the config said 0); '' and 0 with the listener off. */
  address: string;
  port: number;
  /** Outbound mode (§8): each server's links; empty when <Connections> is off. */
  outboundStatus(): ServerStatus[];
  sessions: SessionRegistry;
  /** Connections past their first valid frame. */
  readonly connectionCount: number;
  /** Connections accepted and not yet past their first valid frame. */
  readonly unfinishedCount: number;
  /** AES frames refused as replays since the process started. */
  readonly replayHits: number;
  /** The settings in force (the last reload's). */
  readonly config: AgentConfig;
  readonly startedAt: number;
  /** Connections refused or closed before their first valid frame since start, by reason. */
  readonly rejections: Readonly<Record<string, number>>;
  /**
   * Applies a freshly parsed config (see reload.ts): new connections and
   * requests get it, no session is dropped. Returns what changed and what
   * needs a restart; a changed <Connections> is dialed afresh.
   */
  reload(next: AgentConfig): ReloadPlan;
  /** What `outpost status` shows. */
  status(): AgentStatus;
  /** Stops accepting, closes every connection (gracefully, then by force), closes the router. */
  close(): Promise<void>;
}

export async function startAgent(
  config: AgentConfig,
  logger: Logger,
  options: StartAgentOptions = {},
): Promise<AgentHandle> {
  if (!config.listener.enabled && !config.connections.enabled)
    throw new ConfigError(
      'Listener/@Enabled',
      'is "false" and <Connections> is off: there is nothing to serve; enable one of them',
    );
  const router: OperableRouter = options.router ?? new UnsupportedProductRouter();
  const startedAt = Date.now();
  const rejections = new RejectionCounts();
  const observer = combineObservers([rejections, options.observer]);
  let current = config;
  const limiter = new RateLimitedLog(logger, options.logRatePerSecond ?? 20);
  const sessions = new SessionRegistry({
    idleTimeoutMs: config.sessionIdleTimeoutMs,
    detachedTimeoutMs: config.detachedSessionTimeoutMs,
    ...(options.maxSessions !== undefined ? { maxSessions: options.maxSessions } : {}),
  });
  const meta = new MetaHandler({ config, sessions, logger, router });
  const connections = new Set<AgentConnection>();
  const aes = config.listener.encryption.mode === 'aes';
  const replay = aes ? replayCache() : null;

  sessions.on('close', (session, reason) => {
    limiter.info('session-closed', { session: session.id, reason }, 'session closed');
    observer?.sessionEnded?.(session, reason);
    try {
      router.sessionClosed(session, reason);
    } catch (err) {
      logger.error({ err }, 'product router failed on sessionClosed');
    }
  });

  const deps: ConnectionDeps = { sessions, meta, router, limiter, logger, aes, replay, observer };
  const agentVersion = parseVersion(AGENT_VERSION);
  const adopt = (unfinished: UnfinishedConnection, d: ConnectionDeps) => {
    const c = new AgentConnection(unfinished, d);
    connections.add(c);
    unfinished.connection.once('close', () => connections.delete(c));
  };
  let listener: Listener | null = null;
  let bound = { address: '', port: 0 };
  if (config.listener.enabled) {
    listener = new Listener({
      config: config.listener,
      logger,
      limiter,
      sessions,
      agentVersion,
      replay,
      observer,
      onHandshake: (unfinished) => adopt(unfinished, deps),
    });
    bound = await listener.listen();
  }
  // Outbound links run mode 0 inside TLS (§8): the first-frame rules of mode none, no replay cache.
  const outboundDeps: ConnectionDeps = { ...deps, aes: false, replay: null };
  const makeDialer = (c: AgentConfig): OutboundDialer | null =>
    c.connections.enabled
      ? new OutboundDialer({
          servers: c.connections.servers,
          logger,
          sessions,
          agentVersion,
          maxMessageSize: c.listener.maxMessageSize,
          onHandshake: (unfinished) => adopt(unfinished, outboundDeps),
          ...(options.outbound ? { options: options.outbound } : {}),
        })
      : null;
  let dialer = makeDialer(config);
  dialer?.start();
  // `outpost status` shows each server's links.
  const outboundLinks = (): OutboundLinkStatus[] =>
    (dialer?.status() ?? []).map((s) => ({
      ...s,
      state: s.used > 0 ? 'in use' : s.waiting > 0 ? 'ready' : s.failures > 0 ? 'backing off' : 'dialing',
    }));

  let closing: Promise<void> | null = null;
  return {
    address: bound.address,
    port: bound.port,
    sessions,
    get connectionCount() {
      let n = 0;
      for (const c of connections) if (c.finished) n++;
      return n;
    },
    get unfinishedCount() {
      return listener?.handshakeCount ?? 0;
    },
    outboundStatus() {
      return dialer?.status() ?? [];
    },
    get replayHits() {
      return replay?.hits ?? 0;
    },
    get config() {
      return current;
    },
    startedAt,
    get rejections() {
      return rejections.toJSON();
    },
    reload(next) {
      const plan = mergeReload(current, next);
      const before = current;
      current = plan.config;
      listener?.update(current.listener);
      if (JSON.stringify(before.connections) !== JSON.stringify(current.connections)) {
        // Links in use stay with their connections; idle ones close, and the new servers are dialed.
        dialer?.close();
        dialer = makeDialer(current);
        dialer?.start();
      }
      sessions.setTimeouts(current.sessionIdleTimeoutMs, current.detachedSessionTimeoutMs);
      router.updateConfig?.(current);
      logger.level = current.operations.logLevel;
      return plan;
    },
    status() {
      const l = current.listener;
      let open = 0;
      for (const c of connections) if (c.finished) open++;
      return {
        version: AGENT_VERSION,
        pid: process.pid,
        startedAt: new Date(startedAt).toISOString(),
        uptimeMs: Date.now() - startedAt,
        configPath: current.configPath,
        listener: {
          address: bound.address,
          port: bound.port,
          mode: l.encryption.mode,
          thumbprint: l.encryption.thumbprint,
        },
        connections: { open, unfinished: listener?.handshakeCount ?? 0 },
        hostProcesses: router.hostCount ?? 0,
        outbound: outboundLinks(),
        sessions: describeSessions(
          sessions,
          (id) => router.describeSession?.(id) ?? { hosts: [], processes: [], jobs: [] },
        ),
        rejected: rejections.toJSON(),
        replayCacheHits: replay?.hits ?? 0,
      };
    },
    close() {
      closing ??= (async () => {
        dialer?.close();
        await Promise.all([
          listener?.close(),
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
  aes: boolean;
  replay: ReplayCache | null;
  observer: AgentObserver | undefined;
}

/** Why a first frame is not valid: the codec's reasons, and a token already reserved. */
type FirstFrameProblem = RequestProblem | 'token-reserved';

/** One connection after its handshake: the first-frame rule, dispatch and flow control. */
class AgentConnection {
  readonly connection: FramedConnection;
  readonly closed: Promise<void>;
  private session: Session | null = null;
  private sawFrame = false;
  /** Meta requests queued or running; their replies leave in this order. */
  private metaQueued = 0;
  private metaTail: Promise<void> = Promise.resolve();
  private throttles = 0;
  private readonly reply = (message: Buffer): boolean => {
    // Replies count as activity too: a session is idle only when nothing moves either way.
    if (this.session) this.deps.sessions.touch(this.session);
    const ok = this.connection.send(message);
    if (!ok) this.updateFlow();
    return ok;
  };
  private readonly throttle = (): (() => void) => {
    this.throttles++;
    this.updateFlow();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.throttles--;
      this.updateFlow();
    };
  };

  constructor(
    private readonly unfinished: UnfinishedConnection,
    private readonly deps: ConnectionDeps,
  ) {
    const connection = unfinished.connection;
    this.connection = connection;
    this.closed = new Promise((resolve) => connection.once('close', () => resolve()));
    // Large frames come as the pieces the socket read them in: a product
    // request is forwarded to its host without being copied together.
    connection.deliverPieces();
    connection.on('message', (m, pieces) => this.onMessage(m, pieces));
    connection.on('drain', () => this.updateFlow());
    connection.on('close', (err) => this.onClose(err));
  }

  get remote(): string {
    return this.unfinished.remote;
  }

  /** True once the first valid frame has joined the connection to its session. */
  get finished(): boolean {
    return this.session !== null;
  }

  /** For the session registry (CloseSession, timeouts): graceful close. */
  close(): void {
    this.connection.close();
  }

  private onMessage(head: Buffer, pieces: Pieces | undefined): void {
    let message = head;
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(message);
      // Only a product request of a joined connection is forwarded as pieces;
      // anything the agent reads itself is made whole.
      if (pieces && !(this.session && isProductType(msg.agentType))) {
        message = joinPieces(pieces);
        pieces = undefined;
        msg = decodeClientMessage(message);
      }
    } catch (err) {
      this.protocolError(err, 'message shorter than its header');
      return;
    }
    if (this.session) {
      this.deps.sessions.touch(this.session);
      this.dispatch(this.session, msg, message, pieces);
    } else {
      this.firstFrame(msg, message);
    }
    this.updateFlow();
  }

  /** A frame of an unfinished connection (see the file header). */
  private firstFrame(msg: ClientMessage, message: Buffer): void {
    const { sessions, router, limiter, aes } = this.deps;
    const u = this.unfinished;
    if (!this.sawFrame) {
      this.sawFrame = true;
      if (sessions.belongsToOther(u.sessionId, u.principal)) {
        this.deps.observer?.rejected?.('session-mismatch');
        limiter.warn(
          'session-refused',
          { remote: u.remote, session: u.sessionId },
          'connection closed: the session it asked for belongs to another client',
        );
        this.connection.destroy();
        return;
      }
    }
    let problem: FirstFrameProblem | null = requestProblem(msg);
    if (problem === null && isProductType(msg.agentType)) {
      const token = readToken(msg.data)!;
      if (router.isTokenReserved?.(u.sessionId, token)) problem = 'token-reserved';
    }
    if (problem !== null) {
      if (aes) {
        // Garbage that happened to pad correctly looks like this: answer nothing.
        this.deps.observer?.rejected?.('first-frame');
        limiter.warn(
          'first-frame-invalid',
          { remote: u.remote, problem },
          "connection closed: its first frame is not a valid request (mode aes: does the client use the agent's key?)",
        );
        this.connection.destroy();
        return;
      }
      this.answerProblem(msg, problem);
      return;
    }

    let attached: { session: Session; resumed: boolean };
    try {
      attached = sessions.attach(u.sessionId, u.principal, this, u.remote);
    } catch (err) {
      if (!(err instanceof SessionMismatchError || err instanceof SessionLimitError)) throw err;
      this.deps.observer?.rejected?.(err instanceof SessionLimitError ? 'session-limit' : 'session-mismatch');
      limiter.warn(
        'session-refused',
        { remote: u.remote, session: u.sessionId, reason: err.message },
        'connection closed: no session for it',
      );
      this.connection.destroy();
      return;
    }
    u.finish();
    const session = attached.session;
    this.session = session;
    if (!attached.resumed) this.deps.observer?.sessionStarted?.(session);
    limiter.info(
      'connected',
      { remote: u.remote, session: session.id, resumed: attached.resumed },
      attached.resumed ? 'connection resumed a session' : 'connection opened a session',
    );
    this.dispatch(session, msg, message);
    if (session.closed || this.connection.closed) return;
    try {
      router.connectionOpened?.(this.connection, session);
    } catch (err) {
      this.deps.logger.error({ err }, 'product router failed on connectionOpened');
    }
  }

  /** The ordinary answer to a message that is not a valid request (modes none/ssl before the first valid frame). */
  private answerProblem(msg: ClientMessage, problem: FirstFrameProblem): void {
    switch (problem) {
      case 'agent-type':
        this.unknownAgentType(msg);
        return;
      case 'token':
        this.protocolError(null, 'product data shorter than a token');
        return;
      case 'command':
        if (msg.agentType === AgentType.Meta) this.unknownMeta(msg);
        else this.unknownProduct(msg, readToken(msg.data)!);
        return;
      case 'arguments':
        if (msg.agentType === AgentType.Meta) this.protocolError(null, 'meta arguments do not decode');
        else
          this.reply(encodeError(readToken(msg.data)!, ErrorKind.InvalidArgument, 'arguments do not decode'));
        return;
      case 'token-reserved':
        this.reply(
          encodeError(
            readToken(msg.data)!,
            ErrorKind.InvalidArgument,
            'this token is reserved in the session (a process or job that has not ended)',
          ),
        );
        return;
    }
  }

  private dispatch(session: Session, msg: ClientMessage, message: Buffer, pieces?: Pieces): void {
    if (msg.agentType === AgentType.Meta) {
      this.meta(session, msg);
      return;
    }
    if (!isProductType(msg.agentType)) {
      this.unknownAgentType(msg);
      return;
    }
    const token = readToken(msg.data);
    if (token === null) {
      this.protocolError(null, 'product data shorter than a token');
      return;
    }
    const name = productCommandName(msg.command);
    if (!name) {
      this.unknownProduct(msg, token);
      return;
    }
    try {
      this.deps.router.handle({
        connection: this.connection,
        session,
        agentType: msg.agentType,
        name,
        token,
        data: msg.data,
        message,
        pieces,
        reply: this.reply,
        throttle: this.throttle,
      });
    } catch (err) {
      this.deps.logger.error({ err }, 'product router failed');
      if (name !== 'Cancel')
        this.reply(
          encodeError(
            token,
            ErrorKind.Internal,
            `${AGENT_TYPE_NAMES[msg.agentType]} request failed inside the agent`,
          ),
        );
    }
  }

  private meta(session: Session, msg: ClientMessage): void {
    const name = metaCommandName(msg.command);
    if (!name) {
      this.unknownMeta(msg);
      return;
    }
    this.runMeta(session, name, msg.data);
  }

  private runMeta<N extends MetaCommand>(session: Session, name: N, data: Buffer): void {
    let args: ReturnType<typeof decodeMetaArgs<N>>;
    try {
      args = decodeMetaArgs(name, data);
    } catch (err) {
      this.protocolError(err, `${name} arguments do not decode`);
      return;
    }
    const ctx = { session, remote: this.unfinished.remote, reply: this.reply, connection: this.connection };
    this.inOrder(() => this.deps.meta.handle(name, args, ctx));
  }

  private unknownAgentType(msg: ClientMessage): void {
    const text = `unknown agent type ${msg.agentType}: expected one of ${describeAgentTypes(true)}`;
    this.inOrder(() => void this.reply(encodeMetaError(msg.command, text)));
  }

  private unknownMeta(msg: ClientMessage): void {
    this.inOrder(() => void this.reply(encodeMetaError(msg.command, `unknown meta command ${msg.command}`)));
  }

  private unknownProduct(msg: ClientMessage, token: number): void {
    this.reply(encodeUnknownCommand(token, msg.agentType, msg.command));
  }

  /**
   * Runs a meta-channel task after every earlier one, so meta replies leave
   * in the order the requests came. With nothing queued a synchronous task
   * runs at once (Ping costs no promise).
   */
  private inOrder(task: () => void | Promise<void>): void {
    if (this.metaQueued === 0) {
      let result: void | Promise<void>;
      try {
        result = task();
      } catch (err) {
        this.deps.logger.error({ err }, 'meta task failed');
        return;
      }
      if (!(result instanceof Promise)) return;
      this.metaQueued++;
      this.metaTail = result
        .catch((err: unknown) => this.deps.logger.error({ err }, 'meta task failed'))
        .finally(() => this.metaDone());
      return;
    }
    this.metaQueued++;
    this.metaTail = this.metaTail
      .then(() => (this.connection.closed ? undefined : task()))
      .catch((err: unknown) => this.deps.logger.error({ err }, 'meta task failed'))
      .finally(() => this.metaDone());
  }

  private metaDone(): void {
    this.metaQueued--;
    this.updateFlow();
  }

  private protocolError(cause: unknown, what: string): void {
    const err = isProtocolError(cause) ? cause : new ProtocolError('BAD_VALUE', what);
    this.connection.destroy(err);
  }

  private updateFlow(): void {
    const c = this.connection;
    if (c.closed) return;
    const hold = c.writableNeedDrain || this.metaQueued >= MAX_META_QUEUED || this.throttles > 0;
    if (hold) c.pause();
    else c.resume();
  }

  private onClose(err: Error | undefined): void {
    const { sessions, router, limiter, logger, replay } = this.deps;
    const c = this.connection;
    const session = this.session;
    const fields: Record<string, unknown> = { remote: this.unfinished.remote, session: session?.id ?? null };
    if (err && isProtocolError(err)) {
      if (!session) this.deps.observer?.rejected?.(err.code.toLowerCase());
      if (err.code === 'REPLAYED') fields.replayHits = replay?.hits ?? 0;
      // In mode aes every failure is told the same way to the peer; the log may say more.
      const hint =
        err.code === 'DECRYPT_FAILED' ? ' (does the client use the same AES key as the agent?)' : '';
      limiter.warn(
        'protocol-error',
        { ...fields, code: err.code, reason: err.message },
        `protocol error, connection closed${hint}`,
      );
    } else {
      limiter.info(
        'disconnected',
        { ...fields, ...(err ? { reason: err.message } : {}) },
        'connection closed',
      );
    }
    this.unfinished.finish();
    if (!session) return;
    sessions.detach(session, this);
    try {
      router.connectionClosed(c, session);
    } catch (e) {
      logger.error({ err: e }, 'product router failed on connectionClosed');
    }
  }
}
