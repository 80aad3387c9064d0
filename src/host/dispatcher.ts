/**
 * The product host's dispatcher: takes each client message the agent routes
 * to it (`u8 agentType | i32 command | data`, data starting with the token),
 * decodes it with the catalog, runs the handler the table (handlers.ts) has
 * for its name, and answers with exactly one Response or Error for the
 * token — except Cancel, which gets no reply at all. Handlers run
 * concurrently; replies are matched by token, not by order. Process events
 * go out on EVENT_ROUTE, by token.
 *
 * - An unknown command, or one this host has no handler for: `Unsupported`.
 * - Arguments that do not decode: `InvalidArgument`.
 * - Data too short for a token never reaches a host (the agent closes such
 *   connections); should it, the message is dropped, never a crash.
 * - A result larger than MaxMessageSize: `TooLarge` instead.
 * - Cancel(target): a process of that token is terminated (it ends with
 *   Exited); a request of that token running on the same route ends at
 *   once with `Canceled`, and whatever it produces later is dropped —
 *   except a handler that answers its own cancel (ExecuteJob,
 *   `cancelsItself()`): its signal is aborted and it ends with `Canceled`
 *   once its work has stopped (src/host/jobs.ts).
 */
import {
  AGENT_HEADER_SIZE,
  decodeClientMessage,
  decodeProductArgs,
  type ErrorKindName,
  EVENT_ROUTE,
  type EventName,
  type EventOf,
  encodeError,
  encodeEventPieces,
  encodeResponsePieces,
  encodeUnknownCommand,
  hasNoReply,
  type Pieces,
  PRODUCT_COMMANDS,
  type ProductCommand,
  ProtocolError,
  piecesLength,
  productCommandName,
  type RequestOf,
  type ResultOf,
  readToken,
} from '../protocol/index.js';
import type { TempReporter } from './atomic.js';
import { FileService, type FileServiceHooks } from './files.js';
import { errorCode, fsError } from './fs-errors.js';
import { HANDLERS, type Handler, type HandlerContext, type Handlers } from './handlers.js';
import { JobManager } from './jobs.js';
import { ProcessManager, type ProcessManagerOptions } from './processes.js';
import { type EventSink, type HostContext, HostError } from './types.js';

/** How the dispatcher talks back: send returns false when the pipe is full. */
export interface ReplyChannel {
  /** `route` is the requester's route, or EVENT_ROUTE for process events; a message is one buffer or its pieces. */
  send(route: number, message: Buffer | Pieces): boolean;
  whenWritable(): Promise<void>;
  /**
   * The number of open file handles went from 0 to `open` or back to 0;
   * called before the reply of the request that changed it goes out, so the
   * agent never sees that reply before it knows (HostControl.Handles).
   */
  handles?(open: number): void;
  /** Told of every temp file of an atomic write before it is created and when it is gone (HostControl.Temp). */
  readonly temps?: TempReporter;
}

export interface HostDispatcherOptions {
  readonly fileHooks?: FileServiceHooks;
  readonly processOptions?: ProcessManagerOptions;
  /** How long a canceled job may take before it is stopped by force (default 5 s; tests). */
  readonly jobCancelGraceMs?: number;
  /** Replaces the command table (tests). */
  readonly handlers?: Handlers;
}

/** Commands with no reply of their own (Cancel), from the catalog. */
const NO_REPLY: ReadonlySet<ProductCommand> = new Set(
  (Object.keys(PRODUCT_COMMANDS) as ProductCommand[]).filter((n) => hasNoReply(n)),
);

/**
 * One request in flight, and the context its handler sees: a class rather
 * than a literal with closures, so a request costs one small object.
 */
class Request implements HandlerContext {
  /** Made on first use of `signal` (most handlers never look at it). */
  private controller: AbortController | null = null;
  /** A Cancel ended it (its Error Canceled has gone out). */
  canceled = false;
  /** Its one reply has gone out (or, canceled, been replaced). */
  answered = false;
  /** A Cancel only aborts it; its handler answers Canceled when its work has stopped. */
  selfCancel = false;
  private onSent: (() => void) | null = null;
  private onDropped: (() => void) | null = null;

  constructor(
    private readonly host: HostDispatcher,
    readonly route: number,
    readonly token: number,
    readonly name: ProductCommand,
  ) {}

  get settings(): HostContext {
    return this.host.settings;
  }
  get files(): FileService {
    return this.host.files;
  }
  get processes(): ProcessManager {
    return this.host.processes;
  }
  get jobs(): JobManager {
    return this.host.jobs;
  }
  cancelsItself(): void {
    this.selfCancel = true;
    void this.signal;
  }
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.canceled) this.controller.abort();
    }
    return this.controller.signal;
  }
  afterReply(sent: () => void, dropped: () => void): void {
    this.onSent = sent;
    this.onDropped = dropped;
  }
  cancel(target: number): void {
    this.host.cancel(this.route, target);
  }
  abort(): void {
    this.canceled = true;
    this.controller?.abort();
  }
  /** The Response went out (true) or never will (false). */
  settled(sent: boolean): void {
    const f = sent ? this.onSent : this.onDropped;
    this.onSent = null;
    this.onDropped = null;
    f?.();
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Anything a handler threw, as the HostError it travels as. */
function asHostError(err: unknown, name: string): HostError {
  if (err instanceof HostError) return err;
  if (err instanceof ProtocolError) return new HostError('InvalidArgument', `${name}: ${err.message}`);
  if (errorCode(err) !== undefined) return fsError(err, name);
  return new HostError('Internal', `Internal: ${name}: ${messageOf(err)}`);
}

export class HostDispatcher {
  readonly files: FileService;
  readonly processes: ProcessManager;
  readonly jobs: JobManager;
  private readonly handlers: Handlers;
  /** Requests in flight, by route, then token. */
  private readonly running = new Map<number, Map<number, Request>>();
  /** Whether the agent was last told that handles are open. */
  private toldHandles = false;

  constructor(
    readonly settings: HostContext,
    private readonly channel: ReplyChannel,
    options: HostDispatcherOptions = {},
  ) {
    this.handlers = options.handlers ?? HANDLERS;
    this.files = new FileService(settings, options.fileHooks, channel.temps ?? null);
    const sink: EventSink = {
      send: <N extends EventName>(token: number, name: N, data: EventOf<N>): boolean =>
        channel.send(EVENT_ROUTE, encodeEventPieces(token, name, data)),
      whenWritable: () => channel.whenWritable(),
    };
    this.processes = new ProcessManager(settings, sink, this.files.paths, options.processOptions);
    this.jobs = new JobManager(settings, sink, options.jobCancelGraceMs);
  }

  /**
   * A config reload: AllowedRoots and the per-session limits apply to the
   * requests that arrive from now on (requests already running finish under
   * the old ones). The rest of the settings is fixed for the host's life.
   */
  updateSettings(next: HostContext): void {
    const s = this.settings as { -readonly [K in keyof HostContext]: HostContext[K] };
    s.allowedRoots = next.allowedRoots;
    s.maxOpenFiles = next.maxOpenFiles;
    s.maxProcesses = next.maxProcesses;
    this.files.paths.reloadRoots();
  }

  /** Handles one client message from `route`; never throws. */
  handle(route: number, message: Buffer): void {
    let agentType: number;
    let command: number;
    let data: Buffer;
    try {
      ({ agentType, command, data } = decodeClientMessage(message));
    } catch {
      return; // shorter than a header: the agent never routes one
    }
    const token = readToken(data);
    if (token === null) return; // no token to answer: the agent closes such connections
    const name = productCommandName(command);
    if (name === undefined) {
      this.channel.send(route, encodeUnknownCommand(token, agentType, command));
      return;
    }
    const silent = NO_REPLY.has(name);
    const handler = this.handlers[name] as Handler<typeof name> | undefined;
    if (!handler) {
      if (!silent)
        this.fail(route, token, 'Unsupported', `${name} (${command}) is not supported by this host`);
      return;
    }
    let args: RequestOf<typeof name>;
    try {
      args = decodeProductArgs(name, data);
    } catch (err) {
      if (!silent)
        this.fail(route, token, 'InvalidArgument', `${name}: malformed arguments: ${messageOf(err)}`);
      return;
    }
    if (silent) this.runSilent(route, token, name, handler, args);
    else this.run(route, token, name, handler, args);
  }

  /**
   * Runs one command by name as a request of `token` would run, and returns
   * its result or throws its HostError (tests and in-process callers; the
   * wire goes through {@link handle}).
   */
  async call<N extends ProductCommand>(name: N, args: RequestOf<N>, token = 0): Promise<ResultOf<N>> {
    const handler = this.handlers[name] as Handler<N> | undefined;
    if (!handler) throw new HostError('Unsupported', `${name} is not supported by this host`);
    if (args === null || typeof args !== 'object')
      throw new HostError('InvalidArgument', `${name}: arguments must be an object`);
    const request = new Request(this, 0, token, name);
    try {
      const result = await handler(args, request);
      request.settled(true);
      return result;
    } catch (err) {
      request.settled(false);
      throw asHostError(err, name);
    }
  }

  /** Cancel(target) from `route`. */
  cancel(route: number, target: number): void {
    this.processes.cancel(target);
    const entry = this.running.get(route)?.get(target);
    if (!entry || entry.answered) return;
    if (entry.selfCancel) {
      entry.abort();
      return;
    }
    entry.answered = true;
    entry.abort();
    this.fail(route, target, 'Canceled', `${entry.name} was canceled`);
  }

  /** Session end: every process tree terminated, every handle closed. */
  async shutdown(): Promise<void> {
    await Promise.allSettled([this.processes.terminateAll(), this.files.closeAll(), this.jobs.shutdown()]);
  }

  private run<N extends ProductCommand>(
    route: number,
    token: number,
    name: N,
    handler: Handler<N>,
    args: RequestOf<N>,
  ): void {
    let byRoute = this.running.get(route);
    if (!byRoute) {
      byRoute = new Map();
      this.running.set(route, byRoute);
    }
    if (byRoute.has(token)) {
      // The agent refuses a token in flight; should one arrive, the first keeps it.
      this.fail(route, token, 'InvalidArgument', `token ${token} is already in flight`);
      return;
    }
    const request = new Request(this, route, token, name);
    byRoute.set(token, request);
    let pending: Promise<ResultOf<N>>;
    try {
      // A handler may answer synchronously; the reply still goes out after this call returns.
      pending = Promise.resolve(handler(args, request) as ResultOf<N>);
    } catch (err) {
      this.finish(request, false, err);
      return;
    }
    pending.then(
      (result: ResultOf<N>) => this.finish(request, true, result),
      (err: unknown) => this.finish(request, false, err),
    );
  }

  /** The handler is done: its one reply goes out, unless a Cancel answered for it already. */
  private finish(request: Request, ok: boolean, value: unknown): void {
    const { route, token } = request;
    // Only requests open and close handles: checking here, before the reply, keeps the agent's view ordered.
    this.reportHandles();
    const map = this.running.get(route);
    if (map?.get(token) === request) {
      map.delete(token);
      if (map.size === 0) this.running.delete(route);
    }
    if (request.answered) {
      // Canceled: what it opened is closed again (OpenFile's afterReply), then the agent is told.
      request.settled(false);
      this.reportHandles();
      return;
    }
    request.answered = true;
    const sent = ok
      ? this.respond(route, token, request.name, value as ResultOf<typeof request.name>)
      : this.failWith(route, token, request.name, value);
    request.settled(sent);
  }

  private reportHandles(): void {
    const open = this.files.openHandles;
    if (open > 0 === this.toldHandles) return;
    this.toldHandles = open > 0;
    this.channel.handles?.(open);
  }

  /** A command with no reply of its own (Cancel): run it; its failures go nowhere. */
  private runSilent<N extends ProductCommand>(
    route: number,
    token: number,
    name: N,
    handler: Handler<N>,
    args: RequestOf<N>,
  ): void {
    try {
      Promise.resolve(handler(args, new Request(this, route, token, name))).catch(() => {});
    } catch {
      // nothing to answer
    }
  }

  /** Sends the Response; true when it went out (false: it was replaced by an Error). */
  private respond<N extends ProductCommand>(
    route: number,
    token: number,
    name: N,
    result: ResultOf<N>,
  ): boolean {
    let message: Buffer[];
    try {
      // Pieces: ReadFile's data goes out as it was read, not copied into the message.
      message = encodeResponsePieces(token, name, result);
    } catch (err) {
      this.fail(route, token, 'Internal', `Internal: ${name}: the result does not encode: ${messageOf(err)}`);
      return false;
    }
    const size = piecesLength(message) - AGENT_HEADER_SIZE;
    if (size > this.settings.maxMessageSize) {
      this.fail(
        route,
        token,
        'TooLarge',
        `${name}: the result (${size} bytes) exceeds the message limit of ${this.settings.maxMessageSize} bytes`,
      );
      return false;
    }
    this.channel.send(route, message);
    return true;
  }

  private fail(route: number, token: number, kind: ErrorKindName, message: string): void {
    this.channel.send(route, encodeError(token, kind, message));
  }

  private failWith(route: number, token: number, name: string, err: unknown): false {
    const e = asHostError(err, name);
    this.fail(route, token, e.kind, e.message);
    return false;
  }
}
