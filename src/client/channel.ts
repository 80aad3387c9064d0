/**
 * The request engine under `AgentClient` (internal): one connection at a
 * time to one session, many requests in flight on it, replies matched by
 * token, process events routed to their process, reconnection with the same
 * session ID, and read backpressure (pausing the socket while a process
 * stream's consumer is behind).
 */
import {
  type CommandName,
  decodeReply,
  decodeResult,
  encodeRequest,
  type Reply,
  type RequestOf,
  type ResultOf,
} from '../protocol/index.js';
import {
  type AgentConnection,
  type ConnectOptions,
  connectToAgent,
  type FramedConnection,
  HandshakeError as TransportHandshakeError,
} from '../transport/index.js';
import {
  AbortError,
  abortReason,
  ConnectionError,
  HandshakeError,
  OutpostError,
  RemoteError,
  SessionLostError,
  TimeoutError,
} from './errors.js';

/** Largest positive int32: tokens run 1 … TOKEN_MAX and wrap. */
const TOKEN_MAX = 0x7fffffff;
/**
 * Bytes a frame may add around a message: AES adds the 16-byte next IV and up
 * to 16 bytes of padding. Kept generous so a request never trips the agent's
 * frame limit (which would close the connection).
 */
export const FRAME_OVERHEAD = 64;
/** How long a graceful close waits for the agent before destroying the socket. */
const HALF_CLOSE_TIMEOUT_MS = 5000;

/** Receives what arrives on a StartProcess token. */
export interface ProcessSink {
  /** A Stdout/Stderr/Exited event. */
  onEvent(event: number, body: Buffer): void;
  /** The process is lost to this client: an Error on its token, the session ended, the client closed. */
  onFailure(err: Error): void;
}

interface Pending {
  readonly command: string;
  readonly path: string | undefined;
  readonly agentType: number;
  readonly isStart: boolean;
  resolve(body: Buffer): void;
  reject(err: Error): void;
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
  /** The agent's MaxMessageSize (learned from GetAgentInfo); requests above it are refused locally. */
  agentMaxMessageSize: number;

  private constructor(
    private readonly options: ChannelOptions,
    ac: AgentConnection,
  ) {
    this.agentMaxMessageSize = 0;
    this.id = ac.sessionId;
    this.attach(ac.connection);
  }

  /** Connects (resuming `sessionId` when non-zero). */
  static async open(
    options: ChannelOptions,
    sessionId: number,
    signal: AbortSignal | undefined,
  ): Promise<{ channel: Channel; resumed: boolean }> {
    const ac = await dial(options.connect, sessionId, signal);
    return { channel: new Channel(options, ac), resumed: sessionId !== 0 && ac.sessionId === sessionId };
  }

  get sessionId(): number {
    return this.id;
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

  /** Sends one request and resolves with its decoded result. */
  async request<N extends CommandName>(
    agentType: number,
    name: N,
    args: RequestOf<N>,
    options: RequestOptions = {},
  ): Promise<ResultOf<N>> {
    const { signal } = options;
    if (signal?.aborted) throw abortReason(signal, name);
    const conn = this.state === 'open' && this.conn ? this.conn : await this.connection(signal, name);
    const token = options.token ?? this.allocateToken();
    let message: Buffer;
    try {
      message = encodeRequest(agentType, token, name, args);
    } catch (err) {
      throw new TypeError(
        `invalid arguments for ${name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const limit = this.agentMaxMessageSize;
    if (limit > 0 && message.length + FRAME_OVERHEAD > limit)
      throw new RangeError(
        `${name} request of ${message.length} bytes exceeds the agent's message limit of ${limit} bytes`,
      );
    const body = await new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => {
        // The token stays reserved until its reply arrives or the connection ends.
        entry.resolve = noop;
        entry.reject = noop;
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
        entry.reject(
          new ConnectionError('CONNECTION_LOST', `the connection closed before ${name} was sent; retry`, {
            retryable: true,
          }),
        );
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
   * Sends CloseSession. The agent ends the connection right after its
   * Response, so that close is expected, not a drop to recover from.
   */
  async closeSession(options: RequestOptions): Promise<void> {
    this.sessionEnding = true;
    try {
      await this.request(0, 'CloseSession', {}, options);
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
    if (reply.kind === 'event') {
      this.processes.get(reply.token)?.onEvent(reply.event, reply.body);
      return;
    }
    const entry = this.pending.get(reply.token);
    if (entry) {
      this.pending.delete(reply.token);
      if (reply.kind === 'response') entry.resolve(reply.body);
      else entry.reject(new RemoteError(reply.errorKind, reply.message, entry.command, entry.path));
      this.checkIdle();
      return;
    }
    if (reply.kind === 'error') {
      const sink = this.processes.get(reply.token);
      if (sink) {
        this.processes.delete(reply.token);
        sink.onFailure(new RemoteError(reply.errorKind, reply.message, 'StartProcess'));
      }
    }
  }

  private onClose(conn: FramedConnection, err: Error | undefined): void {
    if (conn !== this.conn) return;
    this.conn = null;
    const inFlight = [...this.pending.entries()];
    this.pending.clear();
    for (const [token, p] of inFlight) if (p.isStart) this.orphans.set(token, p.agentType);
    const entries = inFlight.map(([, p]) => p);
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
        const ac = await dial(this.options.connect, this.id, signal);
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
    this.attach(ac.connection);
    if (resumed) {
      this.terminateOrphans();
      this.announce();
    }
    this.checkIdle();
    return { resumed, sessionId: this.id };
  }

  /** Processes whose StartProcess reply was lost may be running: terminate them (best effort). */
  private terminateOrphans(): void {
    for (const [token, agentType] of this.orphans) {
      this.request(agentType, 'TerminateProcess', { process: token, entireTree: true })
        .catch(noop)
        .finally(() => this.orphans.delete(token));
    }
  }

  /**
   * Makes a product request (ListProcesses, harmless) to each product host
   * that runs followed processes, so an agent that routes detached output
   * to the connection making product requests sends it here now.
   */
  private announce(): void {
    for (const agentType of new Set(this.processTypes.values()))
      this.request(agentType, 'ListProcesses', {}).catch(noop);
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

  private whenIdle(): Promise<void> {
    if (this.pending.size === 0 && this.limbo.length === 0 && !this.reconnecting) return Promise.resolve();
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
    if (this.pending.size > 0 || this.limbo.length > 0 || this.reconnecting) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** connectToAgent with its errors translated to the SDK's. */
async function dial(
  options: Omit<ConnectOptions, 'sessionId' | 'signal'>,
  sessionId: number,
  signal: AbortSignal | undefined,
): Promise<AgentConnection> {
  try {
    return await connectToAgent({ ...options, sessionId, signal });
  } catch (err) {
    throw translateConnectError(err, signal);
  }
}

function translateConnectError(err: unknown, signal: AbortSignal | undefined): unknown {
  if (err instanceof OutpostError) return err;
  if (signal?.aborted && (err === signal.reason || !(err instanceof TransportHandshakeError)))
    return abortReason(signal, 'connecting');
  if (err instanceof TransportHandshakeError) {
    if (err.code === 'TIMEOUT') return new TimeoutError(err.message, { cause: err });
    if (err.code === 'ABORTED') return new AbortError(err.message, { cause: err });
    return new HandshakeError(err.code, err.message, {
      cause: err,
      retryable: err.code === 'CONNECT_FAILED',
    });
  }
  return err;
}

/** Closes our side and keeps reading until the agent closes too (or the timeout passes). */
function halfClose(conn: FramedConnection): Promise<void> {
  if (conn.closed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => conn.destroy(), HALF_CLOSE_TIMEOUT_MS);
    conn.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    conn.socket.end();
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves or rejects with `p`, or rejects as soon as `signal` fires. */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, what?: string): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(abortReason(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortReason(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function noop(): void {}
