/**
 * The product side of one session (PROTOCOL.md §5, §7): its host processes
 * (one per product type, started on first use), the tokens in flight on
 * each connection, the tokens reserved in the session, and where every
 * message from a host goes.
 *
 * Tokens. A token is unique per connection while in flight, across product
 * types (replies carry no agent type). A StartProcess token stays reserved
 * in the session until its Exited has been delivered to a connection, an
 * ExecuteJob token until its Response or Error has — across reconnects.
 * A request that reuses either gets `Error InvalidArgument` from the agent.
 *
 * Routing. A request goes to its host as the raw wire message, on the
 * connection's route. Replies are matched by (route, token) and go back to
 * the connection that asked. Messages of a reserved token (events, and its
 * final Response/Error, on whatever route the host sends them) go to the
 * connection that sent the request while it is attached; after it drops
 * they are spooled (src/agent/spool.ts: memory, then a file), and go to the
 * next connection of the session that attaches (after its first valid
 * frame), or, for a detached process, to the AttachProcess connection —
 * the spool first, then live, in order. The spools of a session are bounded
 * together (MaxDetachedSpoolSize): at the bound, and while a spool file
 * write is pending, the host that feeds them is paused (its processes stop
 * at their pipes), never is output dropped. Cancel has no reply: it goes to
 * the host that owns its target token and is never in flight itself.
 *
 * Host death: every in-flight request and reserved token of that host ends
 * with `Error HostCrashed`; the agent kills the orphaned process groups; the
 * next request starts a fresh host.
 *
 * Idle hosts (docs/ARCHITECTURE.md, "Idle hosts"): a host holds something
 * while a request sent to it is unanswered (also one whose connection has
 * gone: it still runs there), while a token of its product type is reserved
 * (a process until its Exited is delivered, a job until its result is), and
 * while it says it has file handles open. A host that holds nothing is
 * handed to the pool as idle, which stops it after HostIdleTimeout (or to
 * make room); the next request of its product type starts a fresh one. At
 * MaxHostProcesses with no idle host, a request that needs a new host gets
 * `Error LimitExceeded`.
 *
 * Backpressure runs both ways: a full host pipe pauses the requesting
 * connection until it drains (or the host is gone); a full client socket
 * pauses reading from the host, which in turn stops the host reading its
 * children.
 */
import {
  AGENT_TYPE_NAMES,
  decodeProductArgs,
  decodeReply,
  decodeResult,
  ErrorKind,
  EventCode,
  encodeError,
  type HostSettings,
  joinPieces,
  type Pieces,
  type ProductCommand,
  type ProductType,
  peekReply,
  ReplyCode,
} from '../protocol/index.js';
import { HostLimitError, type HostPool } from './host-pool.js';
import type { HostProcess } from './host-process.js';
import type { RequestDone } from './observe.js';
import { Spool } from './spool.js';

/** What the router needs of a client connection. */
export interface RouteConnection {
  /** Unique per agent process; used as the host pipe route. Never 0. */
  readonly id: number;
  readonly closed: boolean;
  /** Sends one message (one buffer, or its pieces); false when the socket's buffer is full. */
  send(message: Buffer | Pieces): boolean;
  onceDrain(cb: () => void): void;
  /** Stops/starts reading requests from this connection (nested). */
  pauseReading(): void;
  resumeReading(): void;
}

export interface SessionHostsOptions {
  sessionId: number;
  /** Where host processes come from (warm spares). */
  pool: HostPool;
  /** Settings for the host of a product type. */
  settingsFor(agentType: ProductType): HostSettings;
  /** Where the output of reserved tokens without a connection is kept (see spool.ts). */
  spool: SessionSpoolOptions;
  /** Observers (metrics, audit): told of each request forwarded and of its end. */
  observeRequest?(name: ProductCommand, data: Buffer): RequestDone | undefined;
  /** Observers: a host of the session started, or ended (`crashed`: while it was the session's). */
  observeHost?(agentType: ProductType, started: boolean, crashed: boolean): void;
  /** Called when the session goes from no work (requests, processes, jobs) to some, and back. */
  onBusyChange?(busy: boolean): void;
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

export interface SessionSpoolOptions {
  /** The directory of spool files (this agent run's; created 0700 on first use). */
  dir: string;
  /** Bytes a spool keeps in memory before it uses its file (default 1 MiB). */
  memoryBytes?: number;
  /** The bound of all spools of the session together (MaxDetachedSpoolSize; read at each check: reload). */
  maxBytes(): number;
  /** Longest wire message (a damaged spool file is detected by it). */
  maxRecordBytes: number;
}

/** A token reserved in the session: a process until its Exited, a job until its result, is delivered. */
interface Reservation {
  readonly token: number;
  readonly agentType: ProductType;
  readonly kind: 'process' | 'job';
  /** Where its messages go now; null: spooled until a connection attaches. */
  conn: RouteConnection | null;
  /** The connection whose request it was (its in-flight entry lives there). */
  readonly origin: RouteConnection;
  /** OS pid from the StartProcess Response (its process group on POSIX). */
  pid: number;
  /** Extension (ps): the StartProcess arguments (a copy, at most 4 KiB; decoded only when listed), and when. */
  readonly startArgs: Buffer | null;
  readonly startedAt: number;
  /** Its Exited (or a final Error) has come from the host (it may not be delivered yet). */
  ended: boolean;
  /**
   * Extension DetachProcess: its events wait for an AttachProcess (they do
   * not go to the next connection that joins); its results still go to the
   * connection that asked.
   */
  detached: boolean;
  /** Taken over by AttachProcess: when that connection goes, it is detached again. */
  viaAttach: boolean;
  /** Its messages that no connection has taken yet, in order; null: none (live ones go directly). */
  spool: Spool | null;
}

/** A process of the session, for ListAgentProcesses (extension). */
export interface SessionProcessInfo {
  token: number;
  pid: number;
  command: string;
  startedAt: number;
  running: boolean;
  detached: boolean;
  attached: boolean;
}

interface Pending {
  readonly agentType: ProductType;
  readonly reservation: Reservation | null;
  /** An observer's end-of-request callback. */
  readonly done: RequestDone | undefined;
}

/** A connection of the session, with its requests in flight by token. */
interface RouteState {
  readonly conn: RouteConnection;
  readonly pending: Map<number, Pending>;
  /** The connection left while requests were pending: the state goes with its last answer. */
  gone: boolean;
}

/** Handle numbers reserved per host of a session and product type: 2,047 hosts before they repeat. */
const HANDLES_PER_HOST = 1 << 20;
const HANDLE_SPACE = 0x7fffffff - HANDLES_PER_HOST;

export class SessionHosts {
  private readonly opts: SessionHostsOptions;
  private readonly hosts = new Map<ProductType, HostProcess>();
  private readonly routes = new Map<number, RouteState>();
  private readonly reserved = new Map<number, Reservation>();
  /** Tokens marked by DetachProcess before their StartProcess arrived. */
  private readonly detachNext = new Set<number>();
  /** Spools holding messages now. */
  private readonly spools = new Set<Spool>();
  /** Hosts paused for the spools (their bound, or a pending file write); resumed together. */
  private readonly spoolPaused = new Set<HostProcess>();
  private spoolCount = 0;
  /** Requests sent to hosts and not answered, over every connection. */
  private inFlight = 0;
  private wasBusy = false;
  private closed = false;
  /** Hosts started so far, by product type (their handle ranges). */
  private readonly generations = new Map<ProductType, number>();
  /** Why the last host of a product type crashed, until the next one starts. */
  private readonly crashes = new Map<ProductType, string>();
  /** Last time a request arrived or a host produced something (ms). */
  lastActivity = Date.now();

  constructor(opts: SessionHostsOptions) {
    this.opts = opts;
  }

  /** Reserved StartProcess tokens (processes not yet reported Exited). */
  get runningProcesses(): number {
    let n = 0;
    for (const r of this.reserved.values()) if (r.kind === 'process') n++;
    return n;
  }

  get hostCount(): number {
    return this.hosts.size;
  }

  get attachedConnections(): number {
    let n = 0;
    for (const state of this.routes.values()) if (!state.gone) n++;
    return n;
  }

  /** For `outpost status`: the hosts (product, pid) and the running processes and jobs. */
  describe(): {
    hosts: { agentType: ProductType; product: string; pid: number | null }[];
    processes: { token: number; pid: number; attached: boolean }[];
    jobs: { token: number; attached: boolean }[];
  } {
    const hosts = [...this.hosts].map(([agentType, h]) => ({
      agentType,
      product: AGENT_TYPE_NAMES[agentType],
      pid: h.pid ?? null,
    }));
    const processes: { token: number; pid: number; attached: boolean }[] = [];
    const jobs: { token: number; attached: boolean }[] = [];
    for (const r of this.reserved.values()) {
      const attached = r.conn !== null && !r.conn.closed;
      if (r.kind === 'process') processes.push({ token: r.token, pid: r.pid, attached });
      else jobs.push({ token: r.token, attached });
    }
    return { hosts, processes, jobs };
  }

  /** Reload: each running host gets the settings of its product type for its next requests. */
  updateSettings(): void {
    for (const [t, h] of this.hosts) h.updateSettings(this.opts.settingsFor(t));
  }

  isReserved(token: number): boolean {
    return this.reserved.has(token);
  }

  /**
   * A connection joined the session (after its first valid frame): it takes
   * over the reserved tokens whose connection is gone, and gets what was
   * spooled for them, in order, then their live output.
   */
  attach(conn: RouteConnection): void {
    this.stateOf(conn);
    for (const r of this.reserved.values())
      if (!r.detached && (!r.conn || r.conn.closed)) {
        r.conn = conn;
        r.spool?.pump();
      }
  }

  /**
   * A connection left: replies to its requests are dropped; its reserved
   * tokens are spooled. Its pending requests still run in their hosts, so
   * they count (a host is not stopped under them) until the host answers.
   */
  detach(conn: RouteConnection): void {
    const state = this.routes.get(conn.id);
    if (!state) return;
    for (const r of this.reserved.values())
      if (r.conn === conn) {
        r.conn = null;
        // An attached detached process waits for the next AttachProcess again.
        if (r.viaAttach) r.detached = true;
      }
    if (state.pending.size === 0) this.routes.delete(conn.id);
    else state.gone = true;
  }

  /**
   * Routes one product request from `conn`: `message` is the client message
   * as received (one buffer, or the pieces of a large one; `data` then only
   * holds its start, enough for the token and a Cancel's arguments).
   */
  request(
    conn: RouteConnection,
    agentType: ProductType,
    name: ProductCommand,
    token: number,
    data: Buffer,
    message: Buffer | Pieces,
  ): void {
    if (this.closed) {
      conn.send(encodeError(token, ErrorKind.Internal, 'the session is closing'));
      return;
    }
    this.lastActivity = Date.now();
    const state = this.stateOf(conn);
    if (name === 'Cancel') {
      this.cancel(state, token, data, message);
      return;
    }
    if (state.pending.has(token) || this.reserved.has(token)) {
      conn.send(
        encodeError(
          token,
          ErrorKind.InvalidArgument,
          state.pending.has(token)
            ? `token ${token} is already in flight on this connection`
            : `token ${token} is reserved in this session by a process or job that has not ended`,
        ),
      );
      return;
    }
    let host: HostProcess;
    try {
      host = this.hostFor(agentType);
    } catch (err) {
      if (!(err instanceof HostLimitError)) throw err;
      this.opts.log('warn', 'no host for a request: MaxHostProcesses reached', {
        sessionId: this.opts.sessionId,
        agentType,
      });
      conn.send(encodeError(token, ErrorKind.LimitExceeded, err.message));
      return;
    }
    let reservation: Reservation | null = null;
    if (name === 'StartProcess' || name === 'ExecuteJob') {
      const detached = name === 'StartProcess' && this.detachNext.delete(token);
      reservation = {
        token,
        agentType,
        kind: name === 'StartProcess' ? 'process' : 'job',
        conn: detached ? null : conn,
        origin: conn,
        pid: 0,
        startArgs: name === 'StartProcess' ? Buffer.from(data.subarray(0, 4096)) : null,
        startedAt: Date.now(),
        ended: false,
        detached,
        viaAttach: false,
        spool: null,
      };
      this.reserved.set(token, reservation);
    }
    state.pending.set(token, { agentType, reservation, done: this.opts.observeRequest?.(name, data) });
    host.busy(1);
    this.opts.pool.setIdle(host, null);
    this.inFlight++;
    this.busyChanged();
    if (!host.send(conn.id, message)) {
      conn.pauseReading();
      // A host that dies never drains: whenWritable() resolves then too.
      void host.whenWritable().then(() => conn.resumeReading());
    }
  }

  /** Cancel (99): to the host that owns the target token; no reply of its own, never in flight. */
  private cancel(state: RouteState, token: number, data: Buffer, message: Buffer | Pieces): void {
    let target: number;
    try {
      target = decodeProductArgs('Cancel', data).targetToken;
    } catch {
      state.conn.send(encodeError(token, ErrorKind.InvalidArgument, 'Cancel: arguments do not decode'));
      return;
    }
    const owner = state.pending.get(target)?.agentType ?? this.reserved.get(target)?.agentType;
    if (owner === undefined) return; // nothing to cancel: it has ended already
    const host = this.hosts.get(owner);
    if (host?.alive) host.send(state.conn.id, message);
  }

  private stateOf(conn: RouteConnection): RouteState {
    let state = this.routes.get(conn.id);
    if (!state) {
      state = { conn, pending: new Map(), gone: false };
      this.routes.set(conn.id, state);
    }
    return state;
  }

  /** The request of `token` on `state` is answered with `reply` (or its host is gone: null). */
  private settle(
    state: RouteState,
    token: number,
    agentType: ProductType,
    reply: Buffer | null,
    hostGone = false,
  ): void {
    // Only observed sessions pay for the look-up (issue 19 tunes this path).
    if (this.opts.observeRequest) state.pending.get(token)?.done?.(reply);
    state.pending.delete(token);
    if (state.gone && state.pending.size === 0 && this.routes.get(state.conn.id) === state)
      this.routes.delete(state.conn.id);
    this.inFlight--;
    if (hostGone) return;
    this.hosts.get(agentType)?.busy(-1);
    this.checkIdle(agentType);
  }

  /** Hands the host of `agentType` to the pool as idle when it holds nothing (see the file header). */
  private checkIdle(agentType: ProductType): void {
    const host = this.hosts.get(agentType);
    if (!host || this.closed) return;
    this.opts.pool.setIdle(
      host,
      this.holdsNothing(agentType, host) ? () => this.stopIdle(agentType, host) : null,
    );
  }

  /** No request in flight, no open handle, no token of its type reserved (a process or job): see the file header. */
  private holdsNothing(agentType: ProductType, host: HostProcess): boolean {
    if (host.pendingRequests > 0 || host.holdsHandles) return false;
    for (const r of this.reserved.values()) if (r.agentType === agentType) return false;
    return true;
  }

  /** The pool stops an idle host: it leaves the session at once, so the next request starts a fresh one. */
  private stopIdle(agentType: ProductType, host: HostProcess): void {
    if (this.hosts.get(agentType) !== host) return;
    this.hosts.delete(agentType);
    this.opts.observeHost?.(agentType, false, false);
    this.opts.log('info', 'host stopped: it held nothing', {
      sessionId: this.opts.sessionId,
      agentType,
      pid: host.pid,
    });
    void host.shutdown();
  }

  private busyChanged(): void {
    const busy = this.reserved.size > 0 || this.inFlight > 0;
    if (busy !== this.wasBusy) {
      this.wasBusy = busy;
      this.opts.onBusyChange?.(busy);
    }
  }

  private hostFor(agentType: ProductType): HostProcess {
    const existing = this.hosts.get(agentType);
    if (existing?.alive) return existing;
    // Each host of this session and type numbers its handles further on (HostSettings.firstHandle).
    const generation = this.generations.get(agentType) ?? 0;
    this.generations.set(agentType, generation + 1);
    const settings: HostSettings = {
      ...this.opts.settingsFor(agentType),
      firstHandle: 1 + ((generation * HANDLES_PER_HOST) % HANDLE_SPACE),
      handlesLostBy: this.crashes.get(agentType) ?? null,
    };
    this.crashes.delete(agentType);
    const host: HostProcess = this.opts.pool.take(settings, {
      onMessage: (route, message, pieces) => this.fromHost(host, agentType, route, message, pieces),
      onExit: (reason) => this.hostExited(host, agentType, reason),
      onHandles: () => this.checkIdle(agentType),
      onLog: (line) =>
        this.opts.log('warn', 'host output', { sessionId: this.opts.sessionId, agentType, line }),
    });
    this.hosts.set(agentType, host);
    this.opts.observeHost?.(agentType, true, false);
    this.opts.log('info', 'host started', { sessionId: this.opts.sessionId, agentType, pid: host.pid });
    return host;
  }

  /** A message from a host: `head` is the whole of it, or the first of its `pieces` (holding its reply header). */
  private fromHost(
    host: HostProcess,
    agentType: ProductType,
    route: number,
    head: Buffer,
    pieces: Pieces | undefined,
  ): void {
    this.lastActivity = Date.now();
    const message = pieces ?? head;
    const { command, token, event } = peekReply(head);
    const isResult = command === ReplyCode.Response || command === ReplyCode.Error;
    const state = route > 0 ? this.routes.get(route) : undefined;
    const pending = state?.pending.get(token);
    const r = this.reserved.get(token);
    if (r && r.agentType === agentType && (!pending || pending.reservation === r)) {
      let final: boolean;
      if (isResult) {
        // Answered: no longer in flight on the connection that asked (if it is still here).
        const origin = this.routes.get(r.origin.id);
        if (origin?.pending.get(token)?.reservation === r) this.settle(origin, token, agentType, head);
        final = !(r.kind === 'process' && command === ReplyCode.Response);
        if (!final) r.pid = startedPid(joinPieces(message));
      } else {
        final = r.kind === 'process' && command === ReplyCode.Event && event === EventCode.Exited;
      }
      if (final) r.ended = true;
      // A detached process's result still answers the connection that asked for it.
      if (r.detached && isResult && !r.origin.closed) {
        this.sendTo(host, r.origin, message);
        if (final) this.release(r);
        this.busyChanged();
        return;
      }
      this.deliverReserved(host, r, message, final);
      this.busyChanged();
      return;
    }
    if (!state || !pending) return;
    if (isResult) {
      // Observers read the reply's header (and a small Error whole): `head` holds it.
      this.settle(state, token, agentType, head);
      this.busyChanged();
    }
    // A connection that has gone gets nothing: nobody asks any more.
    if (!state.gone) this.sendTo(host, state.conn, message);
  }

  private deliverReserved(
    host: HostProcess | null,
    r: Reservation,
    message: Buffer | Pieces,
    final: boolean,
  ): void {
    if (!r.spool && r.conn && !r.conn.closed) {
      this.sendTo(host, r.conn, message);
      if (final) this.release(r);
      return;
    }
    if (r.conn?.closed) r.conn = null;
    // Behind what is spooled already (or nobody takes it now): kept in order, delivered when someone does.
    const spool = r.spool ?? this.spoolFor(r);
    spool.append(message, final);
    this.checkSpools(host);
  }

  private spoolFor(r: Reservation): Spool {
    const o = this.opts.spool;
    const spool: Spool = new Spool({
      dir: o.dir,
      name: `s${this.opts.sessionId}-t${r.token}-${this.spoolCount++}`,
      ...(o.memoryBytes !== undefined ? { memoryBytes: o.memoryBytes } : {}),
      maxRecordBytes: o.maxRecordBytes,
      target: () => r.conn,
      onEmpty: () => {
        // Delivered up to now: live output goes directly again; after the final message the token is free.
        if (r.spool === spool) r.spool = null;
        this.spools.delete(spool);
        if (spool.final) this.release(r);
      },
      onChange: () => this.checkSpools(null),
      log: (level, msg, fields) => this.opts.log(level, msg, { sessionId: this.opts.sessionId, ...fields }),
    });
    r.spool = spool;
    this.spools.add(spool);
    return spool;
  }

  /**
   * Pauses `source` (the host that just spooled) while the spools are over
   * their bound or a file write is pending; resumes the paused hosts when
   * neither holds any more.
   */
  private checkSpools(source: HostProcess | null): void {
    let bytes = 0;
    let blocked = false;
    for (const s of this.spools) {
      if (s.blocked) blocked = true;
      bytes += s.bytes;
    }
    if (blocked || bytes >= this.opts.spool.maxBytes()) {
      if (source?.alive && !this.spoolPaused.has(source)) {
        source.pause();
        this.spoolPaused.add(source);
      }
      return;
    }
    if (this.spoolPaused.size === 0) return;
    const paused = [...this.spoolPaused];
    this.spoolPaused.clear();
    for (const h of paused) h.resume();
  }

  /** Extension (ps): the session's processes (reserved StartProcess tokens). */
  processes(): SessionProcessInfo[] {
    const out: SessionProcessInfo[] = [];
    for (const r of this.reserved.values())
      if (r.kind === 'process')
        out.push({
          token: r.token,
          pid: r.pid,
          command: r.startArgs ? commandLine(r.startArgs) : '?',
          startedAt: r.startedAt,
          running: !r.ended && r.pid > 0,
          detached: r.detached,
          attached: r.conn !== null && !r.conn.closed,
        });
    return out;
  }

  /**
   * Extension (kill): signals the process of `token` (its process group with
   * `tree`, on POSIX): SIGTERM, then SIGKILL after `graceMs` if it has not
   * ended. Its Exited goes where its events go. False when no such process runs.
   */
  kill(token: number, tree: boolean, graceMs = 5000): boolean {
    const r = this.reserved.get(token);
    if (r?.kind !== 'process' || r.ended || r.pid <= 0) return false;
    signalProcess(r.pid, tree, 'SIGTERM');
    const t = setTimeout(() => {
      if (this.reserved.get(token) === r && !r.ended) signalProcess(r.pid, tree, 'SIGKILL');
    }, graceMs);
    t.unref();
    return true;
  }

  /**
   * Extension DetachProcess: the process of `token` (running, or started
   * next with that token on this session) keeps its output for AttachProcess.
   */
  detachToken(token: number): void {
    const r = this.reserved.get(token);
    if (!r) {
      if (this.detachNext.size < 1024) this.detachNext.add(token);
      return;
    }
    if (r.kind !== 'process') return;
    r.detached = true;
    r.conn = null;
  }

  /**
   * Extension AttachProcess: `conn` takes over the detached (or orphaned)
   * process of `token` and gets everything kept for it, in order, then its
   * live output. False when the session has no such process.
   */
  attachToken(conn: RouteConnection, token: number): boolean {
    const r = this.reserved.get(token);
    if (r?.kind !== 'process') return false;
    this.stateOf(conn);
    r.detached = false;
    r.viaAttach = true;
    r.conn = conn;
    r.spool?.pump();
    return true;
  }

  private release(r: Reservation): void {
    if (this.reserved.get(r.token) === r) this.reserved.delete(r.token);
    this.busyChanged();
    this.checkIdle(r.agentType);
  }

  private sendTo(host: HostProcess | null, conn: RouteConnection, message: Buffer | Pieces): void {
    if (!conn.send(message) && host) {
      host.pause();
      conn.onceDrain(() => host.resume());
    }
  }

  private hostExited(host: HostProcess, agentType: ProductType, reason: string): void {
    // Not the session's host any more: stopped for being idle, it held nothing.
    if (this.hosts.get(agentType) !== host) return;
    this.hosts.delete(agentType);
    this.spoolPaused.delete(host);
    this.opts.observeHost?.(agentType, false, !this.closed);
    if (this.closed) return;
    this.crashes.set(agentType, reason);
    this.opts.log('error', 'host process ended', { sessionId: this.opts.sessionId, agentType, reason });
    const text = `the ${AGENT_TYPE_NAMES[agentType]} host process ended (${reason}); the request was not completed — a retry starts a fresh host`;
    for (const state of [...this.routes.values()])
      for (const [token, p] of [...state.pending]) {
        if (p.agentType !== agentType) continue;
        this.settle(state, token, agentType, null, true);
        if (!p.reservation && !state.gone) state.conn.send(encodeError(token, ErrorKind.HostCrashed, text));
      }
    for (const r of [...this.reserved.values()]) {
      if (r.agentType !== agentType) continue;
      // The host can no longer end this tree; the agent does.
      if (r.kind === 'process') killTree(r.pid);
      this.deliverReserved(null, r, encodeError(r.token, ErrorKind.HostCrashed, text), true);
    }
    this.busyChanged();
  }

  /** Ends the session's product side: every host asked to clean up and exit. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A host that holds nothing now can serve the next session (HostPool.release).
    // (A host the spool paused is never clean: its pipe is not being read.)
    const hosts = [...this.hosts].map(([agentType, host]) => ({
      host,
      clean: host.alive && !this.spoolPaused.has(host) && this.holdsNothing(agentType, host),
    }));
    for (const t of this.hosts.keys()) this.opts.observeHost?.(t, false, false);
    this.hosts.clear();
    for (const state of this.routes.values()) for (const p of state.pending.values()) p.done?.(null);
    this.reserved.clear();
    this.routes.clear();
    this.inFlight = 0;
    this.busyChanged();
    // Undelivered output goes with the session: its spool files are removed.
    const spools = [...this.spools];
    this.spools.clear();
    this.spoolPaused.clear();
    await Promise.all([
      ...hosts.map(({ host, clean }) => this.opts.pool.release(host, clean)),
      ...spools.map((s) => s.close()),
    ]);
  }
}

/** The OS pid in a StartProcess Response (0 if it does not decode). */
function startedPid(message: Buffer): number {
  try {
    const reply = decodeReply(message);
    return reply.kind === 'response' ? decodeResult('StartProcess', reply.body).osProcessId : 0;
  } catch {
    return 0;
  }
}

/** The command line of a StartProcess request, for ps (file name and arguments, space-separated). */
function commandLine(data: Buffer): string {
  try {
    const a = decodeProductArgs('StartProcess', data);
    return [a.fileName, ...a.args].join(' ');
  } catch {
    return '?';
  }
}

/** Sends `signal` to a process (its group with `tree`, on POSIX); best effort. */
function signalProcess(pid: number, tree: boolean, signal: NodeJS.Signals): void {
  try {
    if (tree && process.platform !== 'win32') process.kill(-pid, signal);
    else process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Kills a process group the agent learned of (POSIX); best effort. */
function killTree(pid: number): void {
  if (pid <= 0) return;
  try {
    if (process.platform === 'win32') process.kill(pid, 'SIGKILL');
    else process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
