/**
 * The request engine under `AgentClient` (internal): one connection at a
 * time to one session, many requests in flight on it, reconnection with the
 * same session ID, and read backpressure (pausing the socket while a process
 * stream's consumer is behind).
 *
 * Two kinds of reply (PROTOCOL.md §5): product replies (100 Response, 101
 * Error, 102 Event) carry the client's token and may interleave, so pending
 * product requests sit in a map by token; meta replies carry no token and
 * come in the order the requests were sent, so pending meta requests sit in
 * a FIFO and each reply (its request's code, or 9 MetaError) settles the
 * head. UpdateAgent has no reply on success: the SDK always sends a Ping
 * after it, and the next meta reply tells which (a MetaError for command 1
 * is the update's failure; anything else means it succeeded and belongs to
 * the next entry).
 *
 * Tokens come from one counter for the client's whole life (it survives
 * reconnects), skipping tokens still in use, so a token the session keeps
 * reserved (a StartProcess until its Exited) is never sent again.
 */
import {
  AgentType,
  decodeReply,
  decodeResult,
  encodeMetaRequest,
  encodeProductRequest,
  encodeProductRequestPieces,
  type MetaCommand,
  type Pieces,
  type ProductCommand,
  piecesLength,
  type Reply,
  type RequestOf,
  type ResultOf,
} from '../protocol/index.js';
import type { AgentConnection, ConnectOptions, FramedConnection } from '../transport/index.js';
import { dial, HALF_CLOSE_TIMEOUT_MS, halfClose, type LinkSource, raceAbort, sleep } from './dial.js';
import { abortReason, ConnectionError, HandshakeError, RemoteError, SessionLostError } from './errors.js';
import { checkPing, decodeMeta, encodeChecked, MetaQueue, notSent, type Pending } from './meta-queue.js';

/** Largest positive int32: tokens run 1 … TOKEN_MAX and wrap. */
const TOKEN_MAX = 0x7fffffff;
/**
 * Bytes a frame may add around a message: AES adds the 16-byte next IV and up
 * to 16 bytes of padding. Kept generous so a request never trips the agent's
 * frame limit (which would close the connection).
 */
export const FRAME_OVERHEAD = 64;

/** Receives what arrives on a StartProcess token. */
export interface ProcessSink {
  /** A Stdout/Stderr/Exited event. */
  onEvent(event: number, body: Buffer): void;
  /** The process is lost to this client: an Error on its token, the session ended, the client closed. */
  onFailure(err: Error): void;
  /**
   * A Response on the token with no request waiting for it: an ExecuteJob's
   * result delivered on a resumed connection (src/client/jobs.ts).
   */
  onResult?(body: Buffer): void;
  /** The command the token belongs to, for error messages (default StartProcess). */
  readonly command?: string;
}

/** Per-request options. */
export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Names the path in errors. */
  path?: string | undefined;
  /** A token allocated beforehand (StartProcess: the process sink is registered under it first). */
  token?: number | undefined;
}

/** How often and how far apart reconnection is attempted. */
export interface ReconnectPolicy {
  retries: number;
  delayMs: number;
}

/** How a channel connects and whether it reconnects on its own. */
export interface ChannelOptions {
  connect: Omit<ConnectOptions, 'sessionId' | 'signal'>;
  /** Automatic reconnection after a drop; null = off. */
  reconnect: ReconnectPolicy | null;
  /** Connections come from here instead of a TCP dial (outbound agents). */
  link?: LinkSource | undefined;
}

type State = 'open' | 'reconnecting' | 'disconnected' | 'closing' | 'closed';

/** Result of a reconnection. */
export interface ReconnectResult {
  /** True when the agent granted the same session (processes keep streaming). */
  resumed: boolean;
  /** The session now in use. */
  sessionId: number;
}

/** One session's request engine; see the module comment. */
export class Channel {
  private conn: FramedConnection | null = null;
  private state: State = 'open';
  private id = 0;
  private counter = 0;
  private readonly pending = new Map<number, Pending>();
  /** Meta requests in the order they were sent (their replies come in that order). */
  private readonly metaQueue = new MetaQueue();
  private pingCounter = 0;
  private version: number;
  private readonly processes = new Map<number, ProcessSink>();
  /** The product agent type each followed process runs under. */
  private readonly processTypes = new Map<number, number>();
  /** StartProcess tokens whose reply was lost with a connection: terminated once reattached. */
  private readonly orphans = new Map<number, number>();
  /** Requests that were in flight when the connection dropped, settled once the reconnect outcome is known. */
  private limbo: Pending[] = [];
  private readonly blocked = new Set<object>();
  private reconnecting: Promise<ReconnectResult> | null = null;
  private downError: Error | null = null;
  /** Set while CloseSession is in flight: the agent's close that follows is expected. */
  private sessionEnding = false;
  /** Set while a reconnect() reads the old connection to its end (reading is not paused then). */
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  /** The agent's MaxMessageSize (the client's setting; the wire does not tell); larger requests are refused locally. */
  agentMaxMessageSize: number;
  /** Agent types the agent serves (from GetAgentInfo); null until known. */
  supportedAgentTypes: ReadonlySet<number> | null = null;

  private constructor(
    private readonly options: ChannelOptions,
    ac: AgentConnection,
  ) {
    this.agentMaxMessageSize = 0;
    this.id = ac.sessionId;
    this.version = ac.version;
    this.attach(ac.connection);
  }

  /** Connects (resuming `sessionId` when non-zero). */
  static async open(
    options: ChannelOptions,
    sessionId: number,
    signal: AbortSignal | undefined,
  ): Promise<{ channel: Channel; resumed: boolean }> {
    const ac = await dial(options.connect, sessionId, signal, options.link);
    return { channel: new Channel(options, ac), resumed: sessionId !== 0 && ac.sessionId === sessionId };
  }

  get sessionId(): number {
    return this.id;
  }

  /** The agent's version from the last handshake, packed `major<<24 | minor<<16 | build<<8 | revision`. */
  get agentVersion(): number {
    return this.version;
  }

  get connected(): boolean {
    return this.state === 'open' && this.conn !== null;
  }

  /** A token unused by any pending request, process or orphan; one counter for the channel's life. */
  allocateToken(): number {
    for (;;) {
      this.counter = this.counter >= TOKEN_MAX ? 1 : this.counter + 1;
      const t = this.counter;
      if (!this.pending.has(t) && !this.processes.has(t) && !this.orphans.has(t)) return t;
    }
  }

  registerProcess(token: number, sink: ProcessSink, agentType: number): void {
    this.processes.set(token, sink);
    this.processTypes.set(token, agentType);
  }

  unregisterProcess(token: number): void {
    this.processes.delete(token);
    this.processTypes.delete(token);
  }

  /** Sends Cancel (99) for `target` when connected (it has no reply of its own); false when not sent. */
  cancel(agentType: number, target: number): boolean {
    const conn = this.conn;
    if (this.state !== 'open' || !conn || conn.closed) return false;
    conn.send(encodeProductRequest(agentType, 'Cancel', this.allocateToken(), { targetToken: target }));
    return true;
  }

  /** Stops reading the socket while `key` (a stream whose consumer is behind) is blocked. */
  block(key: object): void {
    this.blocked.add(key);
    if (!this.draining) this.conn?.pause();
  }

  /** Releases `key`; reading resumes once nothing is blocked. */
  unblock(key: object): void {
    if (!this.blocked.delete(key)) return;
    if (this.blocked.size === 0) this.conn?.resume();
  }

  /** Sends one product request and resolves with its decoded result. */
  async request<N extends ProductCommand>(
    agentType: number,
    name: N,
    args: RequestOf<N>,
    options: RequestOptions = {},
  ): Promise<ResultOf<N>> {
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal, name);
    const served = this.supportedAgentTypes;
    if (served && !served.has(agentType))
      throw new RemoteError(
        'Unsupported',
        `the agent does not serve agent type ${agentType} (it serves ${[...served].filter((t) => t !== AgentType.Meta).join(', ') || 'none'})`,
        name,
        { path: options.path },
      );
    const conn = this.state === 'open' && this.conn ? this.conn : await this.connection(signal, name);
    const token = options.token ?? this.allocateToken();
    // Pieces: a large byte array (WriteFile's data) goes out as it is, not copied into the message.
    const message = encodeChecked(name, () => encodeProductRequestPieces(agentType, name, token, args));
    this.checkSize(name, message);
    const body = await new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => {
        // The token stays reserved until its reply arrives or the connection
        // ends; Cancel (no reply of its own) makes the agent end it soon.
        entry.resolve = noop;
        entry.reject = noop;
        if (this.conn === conn && !conn.closed)
          conn.send(encodeProductRequest(agentType, 'Cancel', this.allocateToken(), { targetToken: token }));
        reject(abortReason(signal!, name));
      };
      const entry: Pending = {
        command: name,
        path: options.path,
        agentType,
        isStart: name === 'StartProcess',
        resolve: (b) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(b);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.pending.set(token, entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      conn.send(message);
      if (conn.closed && this.pending.get(token) === entry) {
        // Closed under our feet: the close handler has already run, so settle here.
        this.pending.delete(token);
        entry.reject(notSent(name));
      }
    });
    try {
      return decodeResult(name, body);
    } catch (err) {
      throw new ConnectionError('PROTOCOL', `the agent's reply to ${name} does not decode: ${String(err)}`, {
        cause: err,
      });
    }
  }

  /** Sends one meta request (agent type 0) and resolves with its decoded reply. */
  async meta<N extends Exclude<MetaCommand, 'UpdateAgent'>>(
    name: N,
    args: RequestOf<N>,
    options: RequestOptions = {},
  ): Promise<ResultOf<N>> {
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal, name);
    const conn = this.state === 'open' && this.conn ? this.conn : await this.connection(signal, name);
    const message = encodeChecked(name, () => encodeMetaRequest(name, args));
    this.checkSize(name, message);
    const body = await this.metaQueue.enqueue(conn, name, message, signal);
    return decodeMeta(name, body);
  }

  /**
   * UpdateAgent, then a Ping on the same connection: the update has no reply
   * on success, so the Ping's reply (or a MetaError for command 1 before
   * it) is what tells. Resolves once the agent confirmed it.
   */
  async updateAgent(args: RequestOf<'UpdateAgent'>, options: RequestOptions = {}): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal, 'UpdateAgent');
    const conn =
      this.state === 'open' && this.conn ? this.conn : await this.connection(signal, 'UpdateAgent');
    const message = encodeChecked('UpdateAgent', () => encodeMetaRequest('UpdateAgent', args));
    this.checkSize('UpdateAgent', message);
    const token = this.nextPingToken();
    // Both are queued in one synchronous step, so nothing can come between them.
    const updated = this.metaQueue.enqueue(conn, 'UpdateAgent', message, signal);
    const pinged = this.metaQueue.enqueue(conn, 'Ping', encodeMetaRequest('Ping', { token }), signal);
    pinged.catch(noop);
    await updated;
    checkPing(token, decodeMeta('Ping', await pinged));
  }

  /** Round-trips a Ping with a fresh token and checks the echo. */
  async ping(options: RequestOptions = {}): Promise<void> {
    const token = this.nextPingToken();
    checkPing(token, await this.meta('Ping', { token }, options));
  }

  private nextPingToken(): number {
    this.pingCounter = this.pingCounter >= TOKEN_MAX ? 1 : this.pingCounter + 1;
    return this.pingCounter;
  }

  private checkSize(name: string, message: Buffer | Pieces): void {
    const limit = this.agentMaxMessageSize;
    const length = piecesLength(message);
    if (limit > 0 && length + FRAME_OVERHEAD > limit)
      throw new RangeError(
        `${name} request of ${length} bytes exceeds the agent's message limit of ${limit} bytes`,
      );
  }

  /**
   * Waits until the socket's write buffer is below its high-water mark (or
   * the connection ends). Producers of bulk data call it between requests.
   */
  async writable(signal?: AbortSignal): Promise<void> {
    const conn = this.conn;
    if (!conn?.writableNeedDrain) return;
    await new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        conn.off('drain', done);
        conn.off('close', done);
        signal?.removeEventListener('abort', onAbort);
      };
      const done = () => {
        cleanup();
        resolve();
      };
      const onAbort = () => {
        cleanup();
        reject(abortReason(signal!));
      };
      conn.on('drain', done);
      conn.on('close', done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Reconnects with the same session ID. With a live connection it is first
   * half-closed, so every reply and event the agent already sent is still
   * read. Requests in flight reject with a retryable `ConnectionError`
   * (or `SessionLostError` when the session is gone); processes keep going.
   */
  reconnect(retries: number, delayMs: number, signal?: AbortSignal): Promise<ReconnectResult> {
    if (this.state === 'closing' || this.state === 'closed')
      return Promise.reject(
        new ConnectionError('CLOSED', 'the client is closed; connect again with AgentClient.connect'),
      );
    if (this.reconnecting) return this.reconnecting;
    this.state = 'reconnecting';
    const old = this.conn;
    const run = (async () => {
      if (old) {
        // Read what the agent already sent even if a stream is full: it is
        // bounded by the socket buffers, and dropping it would lose output.
        this.draining = true;
        old.resume();
        try {
          await halfClose(old);
        } finally {
          this.draining = false;
        }
      }
      return this.runReconnect(retries, delayMs, signal);
    })();
    this.track(run);
    return run;
  }

  /** Ends the connection (the session lives on) after in-flight requests settle. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return this.whenIdle();
    this.state = 'closing';
    this.failProcesses(
      new ConnectionError(
        'CLOSED',
        `the client was closed; the process keeps running in session ${this.id} (resume it with sessionId)`,
      ),
    );
    this.releaseBlocks();
    await this.whenIdle();
    this.state = 'closed';
    this.downError = new ConnectionError(
      'CLOSED',
      'the client is closed; connect again with AgentClient.connect',
    );
    const conn = this.conn;
    if (conn && !conn.closed) {
      const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
      conn.close(HALF_CLOSE_TIMEOUT_MS);
      await closed;
    }
  }

  /**
   * Ends the session, then closes: once requests in flight have settled,
   * CloseSession (its processes terminated, its handles closed, its hosts
   * stopped). When the agent cannot be told (not connected, or CloseSession
   * fails or is aborted) it closes all the same: the agent then ends the
   * session after its DetachedSessionTimeout.
   */
  async end(options: RequestOptions): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return this.whenIdle();
    this.failProcesses(
      new ConnectionError('CLOSED', `the client was closed; session ${this.id} ends with its processes`),
    );
    this.releaseBlocks();
    try {
      await raceAbort(this.whenIdle(), options.signal, 'close');
    } catch {
      // aborted: close without telling the agent
    }
    if (this.state === 'open' && !options.signal?.aborted) {
      try {
        await this.closeSession(options);
        // Closed by its user, as close() without a session to end would leave it.
        this.downError = new ConnectionError(
          'CLOSED',
          'the client is closed; connect again with AgentClient.connect',
        );
        return;
      } catch {
        // not told: the detached timeout ends the session
      }
    }
    await this.close();
  }

  /**
   * Sends CloseSession. The agent ends the connection right after its
   * Response, so that close is expected, not a drop to recover from.
   */
  async closeSession(options: RequestOptions): Promise<void> {
    this.sessionEnding = true;
    try {
      await this.meta('CloseSession', {}, options);
    } catch (err) {
      this.sessionEnding = false;
      throw err;
    }
    await this.sessionClosed();
  }

  /** After CloseSession succeeded: everything of the session is gone. */
  private async sessionClosed(): Promise<void> {
    const err = new ConnectionError('SESSION_CLOSED', `session ${this.id} was closed with closeSession()`);
    this.failProcesses(err);
    this.orphans.clear();
    this.releaseBlocks();
    await this.close();
    this.conn?.destroy();
    this.state = 'closed';
    this.downError = err;
  }

  // ------------------------------------------------------------ internals

  private async connection(signal: AbortSignal | undefined, what: string): Promise<FramedConnection> {
    for (;;) {
      if (this.state === 'open' && this.conn) return this.conn;
      if (this.state === 'reconnecting' && this.reconnecting) {
        await raceAbort(
          this.reconnecting.catch(() => undefined),
          signal,
          what,
        );
        continue;
      }
      if (this.state === 'closing' || this.state === 'closed')
        throw this.downError ?? new ConnectionError('CLOSED', 'the client is closed');
      throw (
        this.downError ??
        new ConnectionError('NOT_CONNECTED', 'not connected to the agent; call reconnect()', {
          retryable: true,
        })
      );
    }
  }

  private attach(conn: FramedConnection): void {
    this.conn = conn;
    conn.on('message', (m) => this.onMessage(conn, m));
    conn.on('close', (err) => this.onClose(conn, err));
    if (this.blocked.size > 0) conn.pause();
  }

  private onMessage(conn: FramedConnection, message: Buffer): void {
    let reply: Reply;
    try {
      reply = decodeReply(message);
    } catch (err) {
      conn.destroy(
        new ConnectionError('PROTOCOL', `the agent sent a message that does not decode: ${String(err)}`, {
          cause: err,
        }),
      );
      return;
    }
    if (reply.kind === 'meta' || reply.kind === 'meta-error') {
      const violation = this.metaQueue.settle(reply);
      if (violation) conn.destroy(violation);
      this.checkIdle();
      return;
    }
    if (reply.kind === 'event') {
      this.processes.get(reply.token)?.onEvent(reply.event, reply.body);
      return;
    }
    const entry = this.pending.get(reply.token);
    if (entry) {
      this.pending.delete(reply.token);
      if (reply.kind === 'response') entry.resolve(reply.body);
      else
        entry.reject(
          new RemoteError(reply.errorKind, reply.message, entry.command, {
            path: entry.path,
            detail: reply.detail,
          }),
        );
      this.checkIdle();
      return;
    }
    if (reply.kind === 'response') {
      const sink = this.processes.get(reply.token);
      if (sink?.onResult) {
        this.processes.delete(reply.token);
        sink.onResult(reply.body);
      }
      return;
    }
    if (reply.kind === 'error') {
      const sink = this.processes.get(reply.token);
      if (sink) {
        this.processes.delete(reply.token);
        sink.onFailure(
          new RemoteError(reply.errorKind, reply.message, sink.command ?? 'StartProcess', {
            detail: reply.detail,
          }),
        );
      }
    }
  }

  private onClose(conn: FramedConnection, err: Error | undefined): void {
    if (conn !== this.conn) return;
    this.conn = null;
    const inFlight = [...this.pending.entries()];
    this.pending.clear();
    for (const [token, p] of inFlight) if (p.isStart) this.orphans.set(token, p.agentType);
    const entries: Pending[] = [...inFlight.map(([, p]) => p), ...this.metaQueue.takeAll()];
    const why = err ? ` (${err.message})` : '';
    if (this.sessionEnding && this.state === 'open') {
      this.state = 'closing';
      this.downError = new ConnectionError(
        'SESSION_CLOSED',
        `session ${this.id} was closed with closeSession()`,
      );
    }
    if (this.state === 'closing' || this.state === 'closed') {
      const e = new ConnectionError('CLOSED', `the connection closed while the request was in flight${why}`);
      for (const p of entries) p.reject(e);
      this.checkIdle();
      return;
    }
    if (this.state === 'reconnecting') {
      // A reconnect() in progress half-closed this connection: settle once its outcome is known.
      this.limbo.push(...entries);
      return;
    }
    if (err instanceof ConnectionError && err.code === 'PROTOCOL') this.downError = err;
    if (this.options.reconnect) {
      this.limbo.push(...entries);
      this.state = 'reconnecting';
      const run = this.runReconnect(
        this.options.reconnect.retries,
        this.options.reconnect.delayMs,
        undefined,
        true,
      );
      this.track(run);
      run.catch(noop);
      return;
    }
    this.state = 'disconnected';
    const lost = new ConnectionError(
      'CONNECTION_LOST',
      `the connection to the agent was lost${why}; call reconnect() and retry`,
      { retryable: true },
    );
    for (const p of entries) p.reject(lost);
    this.failProcesses(
      new ConnectionError(
        'CONNECTION_LOST',
        `the connection to the agent was lost${why}; automatic reconnection is off, so this process's output is no longer followed`,
      ),
    );
    this.downError = new ConnectionError(
      'NOT_CONNECTED',
      `the connection to the agent was lost${why}; call reconnect() (or connect with reconnect: true)`,
      { retryable: true },
    );
    this.checkIdle();
  }

  private track(run: Promise<ReconnectResult>): void {
    this.reconnecting = run;
    const clear = () => {
      if (this.reconnecting === run) this.reconnecting = null;
    };
    run.then(clear, clear);
  }

  /** Dials the same session up to `retries + 1` times, `delayMs` apart (and, after a drop, `delayMs` before the first). */
  private async runReconnect(
    retries: number,
    delayMs: number,
    signal?: AbortSignal,
    waitFirst = false,
  ): Promise<ReconnectResult> {
    let lastError: unknown = null;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (this.state !== 'reconnecting') break;
      if (attempt > 0 || waitFirst) await sleep(delayMs, signal).catch(noop);
      if (this.state !== 'reconnecting') break;
      if (signal?.aborted) {
        lastError = abortReason(signal, 'reconnecting');
        break;
      }
      try {
        const ac = await dial(this.options.connect, this.id, signal, this.options.link);
        if (this.state !== 'reconnecting') {
          ac.connection.destroy();
          break;
        }
        return this.adopt(ac);
      } catch (err) {
        lastError = err;
        // A wrong mode or certificate will not fix itself by retrying.
        if (err instanceof HandshakeError && /MISMATCH|TLS_FAILED/.test(err.code)) break;
      }
    }
    // Gave up (or the client was closed meanwhile).
    const closed = this.state === 'closing' || this.state === 'closed';
    const reason =
      lastError instanceof Error
        ? lastError.message
        : closed
          ? 'the client was closed'
          : 'no attempt was made';
    const err = closed
      ? new ConnectionError('CLOSED', 'the client was closed while reconnecting')
      : new ConnectionError('NOT_CONNECTED', `reconnecting to the agent failed: ${reason}`, {
          cause: lastError ?? undefined,
          retryable: true,
        });
    if (!closed) this.state = 'disconnected';
    this.downError ??= err;
    if (!closed) this.downError = err;
    const limbo = this.limbo;
    this.limbo = [];
    for (const p of limbo) p.reject(err);
    this.failProcesses(err);
    this.checkIdle();
    throw err;
  }

  private adopt(ac: AgentConnection): ReconnectResult {
    const resumed = ac.sessionId === this.id;
    const limbo = this.limbo;
    this.limbo = [];
    if (resumed) {
      const e = new ConnectionError(
        'CONNECTION_LOST',
        'the connection dropped while the request was in flight; the client reconnected to the same session, retry',
        { retryable: true },
      );
      for (const p of limbo) p.reject(e);
    } else {
      const e = new SessionLostError(this.id, ac.sessionId);
      for (const p of limbo) p.reject(e);
      this.failProcesses(e);
      this.orphans.clear();
      this.id = ac.sessionId;
    }
    this.downError = null;
    this.state = 'open';
    this.version = ac.version;
    this.attach(ac.connection);
    if (resumed) {
      // A resumed connection gets the session's buffered events only after
      // its first valid frame (§7): a Ping is one, for any agent.
      this.ping().catch(noop);
      this.terminateOrphans();
    }
    this.checkIdle();
    return { resumed, sessionId: this.id };
  }

  /** Processes whose StartProcess reply was lost may be running: terminate them (best effort). */
  private terminateOrphans(): void {
    for (const [token, agentType] of this.orphans) {
      this.request(agentType, 'TerminateProcess', { processToken: token, entireTree: true })
        .catch(noop)
        .finally(() => this.orphans.delete(token));
    }
  }

  private failProcesses(err: Error): void {
    const sinks = [...this.processes.values()];
    this.processes.clear();
    this.processTypes.clear();
    for (const s of sinks) s.onFailure(err);
  }

  private releaseBlocks(): void {
    this.blocked.clear();
    this.conn?.resume();
  }

  private busy(): boolean {
    return (
      this.pending.size > 0 ||
      this.metaQueue.length > 0 ||
      this.limbo.length > 0 ||
      this.reconnecting !== null
    );
  }

  private whenIdle(): Promise<void> {
    if (!this.busy()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      if (this.reconnecting)
        this.reconnecting.then(
          () => this.checkIdle(),
          () => this.checkIdle(),
        );
    });
  }

  private checkIdle(): void {
    if (this.busy()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function noop(): void {}
