/**
 * Sessions (PROTOCOL.md §2, §7), keyed by the positive int32 ID the agent
 * grants in its handshake reply: the requested ID when that session is
 * alive, else a fresh random one. IDs grant nothing by themselves: a
 * connection attaches only at its first valid frame, and only if its
 * principal is the session's:
 *
 *   - mode aes: `aes:<fingerprint of the key>` (SHA-256, first 16 hex
 *     digits) — every client that holds the key;
 *   - modes none and ssl: `addr:<remote IP>` of the connection that created
 *     the session.
 *
 * A session is created (and counted against `maxSessions`) only at that
 * first valid frame too, so handshakes that never prove anything create and
 * displace nothing.
 *
 * Lifetime: a session lives while it has connections; when its last
 * connection goes it is "detached" and closed after `detachedTimeoutMs`
 * unless resumed (or after its own `detachedTimeoutMs`, set by the
 * SetSessionOptions extension: shorter for the CLI, up to
 * MaxDetachedSessionTimeout for a detached command). A session that has received no request for `idleTimeoutMs`
 * is closed even if attached. `close()` ends a session at once (CloseSession)
 * and closes its connections. The registry holds at most `maxSessions`;
 * beyond that the longest-detached session without running work is ended,
 * and when there is none the new session is refused (`SessionLimitError`):
 * a session with running processes or jobs is never ended to make room.
 *
 * Extension point: listen to 'close' to release what a session owns (host
 * processes, open files); call `hold()` to keep a busy session from idling
 * out (e.g. while a process runs).
 */
import { createHash, randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';

/** What the registry needs from a connection. */
export interface SessionConnection {
  close(): void;
  /** Its remote address (for `outpost status`). */
  readonly remote?: string;
}

export interface Session {
  readonly id: number;
  readonly principal: string;
  /** Remote address (IPv4-mapped IPv6 as IPv4) of the connection that created it. */
  readonly remote: string;
  readonly createdAt: number;
  /** Last request (ms since the epoch). */
  lastActivity: number;
  readonly connections: Set<SessionConnection>;
  /** Since when the session has had no connection, or null. */
  detachedSince: number | null;
  /** Since when it has had a connection without a gap (null while detached). */
  attachedSince: number | null;
  closed: boolean;
  /** Outstanding `hold()`s; a held session never idles out. */
  holds: number;
  /** Extension SetSessionOptions: this session's detached timeout, or null for the agent's. */
  detachedTimeoutMs: number | null;
}

export interface SessionRegistryOptions {
  idleTimeoutMs: number;
  detachedTimeoutMs: number;
  /** Default 10 000. */
  maxSessions?: number;
}

export interface SessionRegistryEvents {
  /** A session ended; `reason` is for logs. */
  close: [session: Session, reason: string];
}

export class SessionMismatchError extends Error {
  override readonly name = 'SessionMismatchError';
}

/** No room for another session: every session is attached or has running work. */
export class SessionLimitError extends Error {
  override readonly name = 'SessionLimitError';
}

const MAX_SESSION_ID = 0x7fffffff;

export function aesPrincipal(key: Uint8Array): string {
  return `aes:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** The principal of an outbound link (§2, §8): the key the agent presented to the server. */
export function outboundPrincipal(key: string): string {
  return `out:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** The principal of a connection in modes none and ssl: its remote IP. */
export function addressPrincipal(remote: string): string {
  return `addr:${remote}`;
}

export class SessionRegistry extends EventEmitter<SessionRegistryEvents> {
  private readonly sessions = new Map<number, Session>();
  private readonly detachTimers = new Map<number, NodeJS.Timeout>();
  private sweepTimer: NodeJS.Timeout;
  private readonly options: Required<SessionRegistryOptions>;

  constructor(options: SessionRegistryOptions) {
    super();
    this.options = { maxSessions: 10_000, ...options };
    this.sweepTimer = this.startSweep();
  }

  private startSweep(): NodeJS.Timeout {
    const sweepEvery = Math.min(60_000, Math.max(250, Math.floor(this.options.idleTimeoutMs / 4)));
    const timer = setInterval(() => this.sweepIdle(), sweepEvery);
    timer.unref();
    return timer;
  }

  /**
   * New timeouts (reload). The idle timeout applies at the next sweep to
   * every session; a session already detached keeps the deadline it got
   * when its last connection left, the next detach gets the new one.
   */
  setTimeouts(idleTimeoutMs: number, detachedTimeoutMs: number): void {
    this.options.idleTimeoutMs = idleTimeoutMs;
    this.options.detachedTimeoutMs = detachedTimeoutMs;
    clearInterval(this.sweepTimer);
    this.sweepTimer = this.startSweep();
  }

  get size(): number {
    return this.sessions.size;
  }

  get(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  [Symbol.iterator](): IterableIterator<Session> {
    return this.sessions.values();
  }

  /**
   * The ID to grant for a hello asking for `requested` (0: a new session):
   * `requested` when that session is alive, else a fresh random positive
   * int32 (§2). Whose session it is, is checked at the first frame.
   */
  proposeId(requested: number): number {
    if (requested > 0) {
      const s = this.sessions.get(requested);
      if (s && !s.closed) return requested;
    }
    for (;;) {
      const id = randomInt(1, MAX_SESSION_ID + 1);
      if (!this.sessions.has(id)) return id;
    }
  }

  /** True when session `id` is alive and belongs to someone other than `principal`. */
  belongsToOther(id: number, principal: string): boolean {
    const s = this.sessions.get(id);
    return s !== undefined && !s.closed && s.principal !== principal;
  }

  /**
   * Attaches a connection to session `id`, creating it if needed (`remote`
   * is recorded for a new one). Throws SessionMismatchError if the session
   * exists with another principal, SessionLimitError if a new session finds
   * no room.
   */
  attach(
    id: number,
    principal: string,
    connection: SessionConnection,
    remote = '',
  ): { session: Session; resumed: boolean } {
    const now = Date.now();
    let session = this.sessions.get(id);
    let resumed = false;
    if (session) {
      if (session.principal !== principal)
        throw new SessionMismatchError(`session ${id} belongs to another principal`);
      resumed = true;
      this.clearDetachTimer(id);
    } else {
      if (this.sessions.size >= this.options.maxSessions && !this.evictOneDetached())
        throw new SessionLimitError(
          `${this.sessions.size} sessions are open and none can be ended (all attached or running work)`,
        );
      session = {
        id,
        principal,
        remote,
        createdAt: now,
        lastActivity: now,
        connections: new Set(),
        detachedSince: null,
        attachedSince: null,
        closed: false,
        holds: 0,
        detachedTimeoutMs: null,
      };
      this.sessions.set(id, session);
    }
    session.connections.add(connection);
    if (session.connections.size === 1) session.attachedSince = now;
    session.detachedSince = null;
    session.lastActivity = now;
    return { session, resumed };
  }

  /** A connection of the session went away; the last one starts the detached timeout. */
  detach(session: Session, connection: SessionConnection): void {
    session.connections.delete(connection);
    if (session.closed || session.connections.size > 0) return;
    session.detachedSince = Date.now();
    session.attachedSince = null;
    this.clearDetachTimer(session.id);
    const ms = session.detachedTimeoutMs ?? this.options.detachedTimeoutMs;
    const timer = setTimeout(() => this.close(session, 'detached timeout'), ms);
    timer.unref();
    this.detachTimers.set(session.id, timer);
  }

  /** Records activity (a request) on the session. */
  touch(session: Session): void {
    session.lastActivity = Date.now();
  }

  /** Keeps the session from idling out until the returned function is called. */
  hold(session: Session): () => void {
    session.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      session.holds--;
      session.lastActivity = Date.now();
    };
  }

  /** Ends a session: removes it, closes its connections, emits 'close'. */
  close(session: Session, reason: string): void {
    if (session.closed) return;
    session.closed = true;
    this.clearDetachTimer(session.id);
    if (this.sessions.get(session.id) === session) this.sessions.delete(session.id);
    for (const c of [...session.connections]) c.close();
    session.connections.clear();
    this.emit('close', session, reason);
  }

  /** Closes every session and stops the timers. */
  dispose(reason = 'agent shutting down'): void {
    clearInterval(this.sweepTimer);
    for (const s of [...this.sessions.values()]) this.close(s, reason);
  }

  private clearDetachTimer(id: number): void {
    const t = this.detachTimers.get(id);
    if (t) {
      clearTimeout(t);
      this.detachTimers.delete(id);
    }
  }

  /** Ends the longest-detached session that runs nothing; false when there is none. */
  private evictOneDetached(): boolean {
    let oldest: Session | undefined;
    for (const s of this.sessions.values())
      if (s.detachedSince !== null && s.holds === 0 && (!oldest || s.detachedSince < oldest.detachedSince!))
        oldest = s;
    if (!oldest) return false;
    this.close(oldest, 'evicted: too many sessions');
    return true;
  }

  private sweepIdle(): void {
    const limit = Date.now() - this.options.idleTimeoutMs;
    for (const s of [...this.sessions.values()])
      if (s.holds === 0 && s.lastActivity < limit) this.close(s, 'idle timeout');
  }
}
