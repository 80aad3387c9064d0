/**
 * The product host's command table: decodes each request, runs the file or
 * process handler, and answers with exactly one Response or Error per token
 * (plus the events of StartProcess tokens). Handlers run concurrently;
 * replies are matched by token, not by order.
 */
import {
  type CommandName,
  commandName,
  decodeArgs,
  decodeRequestHeader,
  ErrorKind,
  type ErrorKindName,
  type EventName,
  type EventOf,
  encodeError,
  encodeEvent,
  encodeResultResponse,
  isMetaCommand,
  NO_ROUTE,
  ProtocolError,
  type RequestOf,
  type ResultOf,
} from '../protocol/index.js';
import { FILE_COMMANDS, FileService } from './files.js';
import { ProcessManager } from './processes.js';
import { type EventSink, type HostContext, HostError } from './types.js';

/** How the dispatcher talks back: send returns false when the pipe is full. */
export interface ReplyChannel {
  /** `route` is the requester's route, or NO_ROUTE for process events. */
  send(route: number, message: Buffer): boolean;
  whenWritable(): Promise<void>;
}

type FileCommandName = (typeof FILE_COMMANDS)[number];
const FILE_SET = new Set<string>(FILE_COMMANDS);

export class HostDispatcher {
  readonly files: FileService;
  readonly processes: ProcessManager;
  private readonly channel: ReplyChannel;
  /** agent type of each running process token, for its events. */
  private readonly processTypes = new Map<number, number>();

  constructor(ctx: HostContext, channel: ReplyChannel) {
    this.channel = channel;
    this.files = new FileService(ctx);
    const sink: EventSink = {
      send: <N extends EventName>(token: number, name: N, data: EventOf<N>): boolean => {
        const agentType = this.processTypes.get(token) ?? 0;
        if (name === 'Exited') this.processTypes.delete(token);
        return channel.send(NO_ROUTE, encodeEvent(agentType, token, name, data));
      },
      whenWritable: () => channel.whenWritable(),
    };
    this.processes = new ProcessManager(ctx, sink);
  }

  /** Handles one request message from `route`; never throws. */
  handle(route: number, message: Buffer): void {
    let agentType = 0;
    let token = 0;
    try {
      const h = decodeRequestHeader(message);
      agentType = h.agentType;
      token = h.token;
      const name = commandName(h.agentType, h.command);
      if (!name || isMetaCommand(name)) {
        this.fail(route, agentType, token, 'UnknownCommand', `no product command ${h.command}`);
        return;
      }
      let args: unknown;
      try {
        args = decodeArgs(name, h.body);
      } catch (err) {
        const why = err instanceof ProtocolError ? err.message : String(err);
        this.fail(route, agentType, token, 'InvalidArgument', `${name}: malformed arguments: ${why}`);
        return;
      }
      this.run(route, agentType, token, name, args).catch((err: unknown) =>
        this.failWith(route, agentType, token, err),
      );
    } catch (err) {
      this.failWith(route, agentType, token, err);
    }
  }

  private async run(
    route: number,
    agentType: number,
    token: number,
    name: CommandName,
    args: unknown,
  ): Promise<void> {
    if (FILE_SET.has(name)) {
      const n = name as FileCommandName;
      const result = await this.files.handle(n, args as RequestOf<typeof n>);
      this.respond(route, agentType, token, n, result);
      return;
    }
    switch (name) {
      case 'StartProcess': {
        this.processTypes.set(token, agentType);
        let started: { pid: number; begin(): void };
        try {
          started = await this.processes.start(token, args as RequestOf<'StartProcess'>);
        } catch (err) {
          this.processTypes.delete(token);
          throw err;
        }
        this.respond(route, agentType, token, 'StartProcess', { pid: started.pid });
        started.begin();
        return;
      }
      case 'WriteStdin':
        await this.processes.writeStdin(args as RequestOf<'WriteStdin'>);
        this.respond(route, agentType, token, 'WriteStdin', {});
        return;
      case 'TerminateProcess':
        await this.processes.terminate(args as RequestOf<'TerminateProcess'>);
        this.respond(route, agentType, token, 'TerminateProcess', {});
        return;
      case 'ListProcesses':
        this.respond(route, agentType, token, 'ListProcesses', this.processes.list());
        return;
      case 'Cancel':
        // A running process is terminated (its Exited event follows). File
        // operations are short and run to completion; cancelling one is a no-op.
        this.processes.cancel((args as RequestOf<'Cancel'>).token);
        this.respond(route, agentType, token, 'Cancel', {});
        return;
      default:
        throw new HostError('Unsupported', `${name} is not supported by this host`);
    }
  }

  private respond<N extends CommandName>(
    route: number,
    agentType: number,
    token: number,
    name: N,
    result: ResultOf<N>,
  ): void {
    this.channel.send(route, encodeResultResponse(agentType, token, name, result));
  }

  private fail(route: number, agentType: number, token: number, kind: ErrorKindName, message: string): void {
    this.channel.send(route, encodeError(agentType, token, ErrorKind[kind], message));
  }

  private failWith(route: number, agentType: number, token: number, err: unknown): void {
    if (err instanceof HostError) this.fail(route, agentType, token, err.kind, err.message);
    else if (err instanceof ProtocolError) this.fail(route, agentType, token, 'InvalidArgument', err.message);
    else
      this.fail(
        route,
        agentType,
        token,
        'Internal',
        `internal error: ${err instanceof Error ? err.message : String(err)}`,
      );
  }

  /** Session end: every process tree terminated, every handle closed. */
  async shutdown(): Promise<void> {
    await Promise.allSettled([this.processes.terminateAll(), this.files.closeAll()]);
  }
}
