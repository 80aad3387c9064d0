/**
 * The real product router: each session gets a `SessionHosts` (one host
 * process per product type, started on first use and stopped when it has
 * held nothing for HostIdleTimeout); all hosts come from one `HostPool`,
 * which keeps the warm spare and the MaxHostProcesses bound; product requests are
 * forwarded to it as they came, replies go back to the connection that
 * asked, and the messages of reserved tokens (processes, jobs) to the
 * connection that started them, or to the next one that attaches.
 */
import { join } from 'node:path';
import {
  type HostSettings,
  type Pieces,
  PRODUCT_NAMES,
  type ProductCommand,
  type ProductType,
  pipeFrameLimit,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import type { AgentConfig } from './config.js';
import { HostPool } from './host-pool.js';
import type { Logger } from './log.js';
import { instanceName } from './meta.js';
import type { AgentObserver } from './observe.js';
import type { ProcessControl, ProductRequestContext, ProductRouter } from './product.js';
import { type RouteConnection, SessionHosts } from './session-hosts.js';
import type { Session } from './sessions.js';
import { removeSpoolDir, removeStaleSpools, spoolRunDir } from './spool.js';

export interface HostRouterOptions {
  config: AgentConfig;
  logger: Logger;
  /** Liveness probe of busy hosts (ms); defaults 5 s / 15 s. */
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
  /** Bytes a detached output spool keeps in memory before it uses its file (default 1 MiB; tests make it tiny). */
  spoolMemoryBytes?: number;
  /** Warm spare host processes kept ready after first use (default 1; 0 disables). */
  spareHosts?: number;
  /** Metrics and audit: told of requests and hosts (undefined: nothing is observed). */
  observer?: AgentObserver | undefined;
}

/** Adapts a FramedConnection to what SessionHosts needs. */
class ConnectionRoute implements RouteConnection {
  private releases: (() => void)[] = [];
  throttle: (() => () => void) | null = null;

  constructor(
    readonly id: number,
    private readonly connection: FramedConnection,
  ) {
    connection.once('close', () => {
      for (const r of this.releases.splice(0)) r();
    });
  }

  /**
   * Closed for routing as soon as nothing more can be written: after the
   * client's FIN the socket ends its side at once (no half-open), and an
   * event sent then would be lost; it must go to the detached output spool.
   */
  get closed(): boolean {
    return this.connection.closed || !this.connection.socket.writable;
  }

  send(message: Buffer | Pieces): boolean {
    if (this.closed) return true;
    return this.connection.send(message);
  }

  onceDrain(cb: () => void): void {
    const c = this.connection;
    if (c.closed || !c.writableNeedDrain) {
      cb();
      return;
    }
    const done = () => {
      c.off('drain', done);
      c.off('close', done);
      cb();
    };
    c.on('drain', done);
    c.on('close', done);
  }

  pauseReading(): void {
    if (this.throttle) this.releases.push(this.throttle());
  }

  resumeReading(): void {
    this.releases.shift()?.();
  }
}

export class HostRouter implements ProductRouter {
  private opts: HostRouterOptions;
  private readonly sessions = new Map<number, SessionHosts>();
  private readonly routes = new WeakMap<FramedConnection, ConnectionRoute>();
  private nextRoute = 1;
  private readonly pool: HostPool;
  /** This run's spool directory (under DetachedSpoolPath; created on first use, removed at close). */
  readonly spoolDir: string;

  constructor(opts: HostRouterOptions) {
    this.opts = opts;
    // Spools of a previous run that ended without cleaning up (a crash, kill -9) are never delivered.
    const parent = opts.config.detachedSpoolPath;
    const stale = removeStaleSpools(parent);
    if (stale > 0)
      opts.logger.info({ dir: parent, runs: stale }, 'removed detached output spools of a previous run');
    this.spoolDir = spoolRunDir(parent);
    const spares = opts.spareHosts ?? Number(process.env.OUTPOST_SPARE_HOSTS ?? 1);
    this.pool = new HostPool({
      spares: Number.isInteger(spares) && spares >= 0 ? spares : 1,
      ...(opts.heartbeatMs !== undefined ? { heartbeatMs: opts.heartbeatMs } : {}),
      ...(opts.heartbeatTimeoutMs !== undefined ? { heartbeatTimeoutMs: opts.heartbeatTimeoutMs } : {}),
      idleMs: opts.config.hostIdleTimeoutMs,
      maxHosts: opts.config.maxHostProcesses,
      frameLimit: pipeFrameLimit(opts.config.listener.maxMessageSize),
      onLog: (line) => opts.logger.warn({ line }, 'spare host output'),
    });
  }

  private settingsFor(agentType: ProductType, session: Session): HostSettings {
    const c = this.opts.config;
    const root = c.rootPaths[agentType];
    return {
      agentType,
      rootPath: root,
      baseDirectory: root,
      allowedRoots: c.allowedRoots,
      maxMessageSize: c.listener.maxMessageSize,
      maxOpenFiles: c.maxOpenFilesPerSession,
      maxProcesses: c.maxProcessesPerSession,
      productRoots: Object.values(c.rootPaths),
      maxExtractedBytes: c.maxExtractedSize,
      // UpdateAgent's files for the client that created the session (§5.1).
      extensionPath: join(
        c.extensionCachePath,
        instanceName(session.remote),
        PRODUCT_NAMES[agentType],
        'extensions',
      ),
    };
  }

  private route(connection: FramedConnection): ConnectionRoute {
    let r = this.routes.get(connection);
    if (!r) {
      r = new ConnectionRoute(this.nextRoute, connection);
      this.nextRoute = this.nextRoute >= 0x7fffffff ? 1 : this.nextRoute + 1;
      this.routes.set(connection, r);
    }
    return r;
  }

  /** Host processes of the agent now, warm spare included. */
  get hostCount(): number {
    return this.pool.size;
  }

  /**
   * Reload: new hosts get the new settings; running hosts get AllowedRoots
   * and the per-session limits for their next requests (HostControl.Settings);
   * the pool gets the new HostIdleTimeout and MaxHostProcesses.
   */
  updateConfig(config: AgentConfig): void {
    this.opts = { ...this.opts, config };
    this.pool.setLimits(config.hostIdleTimeoutMs, config.maxHostProcesses);
    for (const hosts of this.sessions.values()) hosts.updateSettings();
  }

  /** For `outpost status`: the session's hosts, processes and jobs (empty when it has used no product yet). */
  describeSession(sessionId: number): ReturnType<SessionHosts['describe']> {
    return this.sessions.get(sessionId)?.describe() ?? { hosts: [], processes: [], jobs: [] };
  }

  private hostsFor(session: Session): SessionHosts {
    let hosts = this.sessions.get(session.id);
    if (!hosts) {
      const log = this.opts.logger;
      const observer = this.opts.observer;
      let release: (() => void) | null = null;
      hosts = new SessionHosts({
        sessionId: session.id,
        pool: this.pool,
        settingsFor: (t) => this.settingsFor(t, session),
        ...(observer?.request
          ? {
              observeRequest: (name: ProductCommand, data: Buffer) => observer.request?.(session, name, data),
            }
          : {}),
        ...(observer?.hostStarted || observer?.hostEnded
          ? {
              observeHost: (t: ProductType, started: boolean, crashed: boolean) =>
                started ? observer.hostStarted?.(t) : observer.hostEnded?.(t, crashed),
            }
          : {}),
        spool: {
          dir: this.spoolDir,
          ...(this.opts.spoolMemoryBytes !== undefined ? { memoryBytes: this.opts.spoolMemoryBytes } : {}),
          maxBytes: () => this.opts.config.maxDetachedSpoolSize,
          maxRecordBytes: pipeFrameLimit(this.opts.config.listener.maxMessageSize),
        },
        // A session with running processes never idles out.
        onBusyChange: (busy) => {
          if (busy && !release) {
            session.holds++;
            release = () => {
              session.holds--;
              session.lastActivity = Date.now();
            };
          } else if (!busy && release) {
            release();
            release = null;
          }
        },
        log: (level, msg, fields) => log[level](fields ?? {}, msg),
      });
      this.sessions.set(session.id, hosts);
    }
    return hosts;
  }

  handle(ctx: ProductRequestContext): void {
    const hosts = this.hostsFor(ctx.session);
    const route = this.route(ctx.connection);
    route.throttle = ctx.throttle;
    hosts.request(route, ctx.agentType, ctx.name, ctx.token, ctx.data, ctx.pieces ?? ctx.message);
  }

  isTokenReserved(sessionId: number, token: number): boolean {
    return this.sessions.get(sessionId)?.isReserved(token) ?? false;
  }

  connectionOpened(connection: FramedConnection, session: Session): void {
    // Only sessions that already have product state need to know: they may
    // hold output of processes whose connection dropped.
    this.sessions.get(session.id)?.attach(this.route(connection));
  }

  connectionClosed(connection: FramedConnection, session: Session): void {
    const r = this.routes.get(connection);
    if (r) this.sessions.get(session.id)?.detach(r);
  }

  sessionClosed(session: Session, reason: string): void {
    const hosts = this.sessions.get(session.id);
    if (!hosts) return;
    this.sessions.delete(session.id);
    this.opts.logger.info({ sessionId: session.id, reason }, 'session ended: stopping its hosts');
    void hosts.close();
  }

  /** Extensions ps / kill / detach / attach, by session. */
  readonly processControl: ProcessControl = {
    processes: (id) => this.sessions.get(id)?.processes() ?? [],
    kill: (id, token, tree) => this.sessions.get(id)?.kill(token, tree) ?? false,
    detachToken: (session, token) => this.hostsFor(session).detachToken(token),
    attachToken: (id, connection, token) =>
      this.sessions.get(id)?.attachToken(this.route(connection), token) ?? false,
  };

  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all([...all.map((h) => h.close()), this.pool.close()]);
    await removeSpoolDir(this.spoolDir);
  }
}
