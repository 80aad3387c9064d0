/**
 * The FIFO of meta requests (internal). Meta replies carry no token and come
 * in the order the requests were sent (PROTOCOL.md §5.1), so each reply — the
 * request's own code, or 9 MetaError — settles the oldest entry. UpdateAgent
 * has no reply on success: the next meta reply settles it too, as a failure
 * when it is a MetaError for command 1, else as a success, and then goes on
 * to the entry after it (the Ping the SDK always sends behind an update).
 */
import {
  AgentType,
  decodeMetaResult,
  hasNoReply,
  META_COMMANDS,
  type MetaCommand,
  type Reply,
  type ResultOf,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import { abortReason, ConnectionError, MetaError } from './errors.js';

/** A request waiting for its reply (product requests by token, meta ones in this FIFO). */
export interface Pending {
  readonly command: string;
  readonly path: string | undefined;
  readonly agentType: number;
  readonly isStart: boolean;
  resolve(body: Buffer): void;
  reject(err: Error): void;
}

/** A meta request waiting in the FIFO for its (untokened, in-order) reply. */
interface MetaPending extends Pending {
  /** The request's command code, which its reply carries. */
  readonly code: number;
  /** UpdateAgent: no reply on success (settled by the next meta reply). */
  readonly noReply: boolean;
}

const EMPTY = Buffer.alloc(0);

export class MetaQueue {
  private queue: MetaPending[] = [];

  /** Requests sent and not yet answered. */
  get length(): number {
    return this.queue.length;
  }

  /** Puts a meta request at the tail of the FIFO and sends it on `conn`. */
  enqueue(
    conn: FramedConnection,
    name: MetaCommand,
    message: Buffer,
    signal: AbortSignal | undefined,
  ): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => {
        // Its reply still comes, in order: the entry stays in the FIFO, unheard.
        entry.resolve = noop;
        entry.reject = noop;
        reject(abortReason(signal!, name));
      };
      const entry: MetaPending = {
        command: name,
        path: undefined,
        agentType: AgentType.Meta,
        isStart: false,
        code: META_COMMANDS[name].code,
        noReply: hasNoReply(name),
        resolve: (b) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(b);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.queue.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
      conn.send(message);
      if (conn.closed && this.queue.includes(entry)) {
        // Closed under our feet: the close handler has already run, so settle here.
        this.queue = this.queue.filter((e) => e !== entry);
        entry.reject(notSent(name));
      }
    });
  }

  /**
   * Settles the head with `reply`. Returns the protocol violation to close
   * the connection with (a meta reply out of order or out of nowhere), or null.
   */
  settle(reply: Extract<Reply, { kind: 'meta' | 'meta-error' }>): ConnectionError | null {
    for (;;) {
      const head = this.queue.shift();
      if (!head)
        // A MetaError for something we did not ask is harmless; a meta reply out of nowhere is not.
        return reply.kind === 'meta'
          ? new ConnectionError(
              'PROTOCOL',
              `the agent sent meta reply ${reply.command} that no request asked for`,
            )
          : null;
      if (head.noReply) {
        if (reply.kind === 'meta-error' && reply.requestCommand === head.code) {
          head.reject(new MetaError(reply.requestCommand, reply.message, head.command));
          return null;
        }
        head.resolve(EMPTY); // no MetaError came for it: it succeeded; the reply is the next entry's
        continue;
      }
      if (reply.kind === 'meta-error')
        head.reject(new MetaError(reply.requestCommand, reply.message, head.command));
      else if (reply.command === head.code) head.resolve(reply.body);
      else {
        const err = new ConnectionError(
          'PROTOCOL',
          `the agent answered ${head.command} (${head.code}) with meta reply ${reply.command}: meta replies must come in order`,
        );
        head.reject(err);
        return err;
      }
      return null;
    }
  }

  /** Empties the FIFO (the connection closed); the caller settles what it returns. */
  takeAll(): Pending[] {
    const all = this.queue;
    this.queue = [];
    return all;
  }
}

export function encodeChecked<T extends Buffer | Buffer[]>(name: string, encode: () => T): T {
  try {
    return encode();
  } catch (err) {
    throw new TypeError(`invalid arguments for ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function decodeMeta<N extends MetaCommand>(name: N, body: Buffer): ResultOf<N> {
  try {
    return decodeMetaResult(name, body);
  } catch (err) {
    throw new ConnectionError('PROTOCOL', `the agent's reply to ${name} does not decode: ${String(err)}`, {
      cause: err,
    });
  }
}

export function checkPing(sent: number, reply: ResultOf<'Ping'>): void {
  if (reply.token !== sent)
    throw new ConnectionError('PROTOCOL', `the agent echoed Ping token ${reply.token}, expected ${sent}`);
}

export function notSent(name: string): ConnectionError {
  return new ConnectionError('CONNECTION_LOST', `the connection closed before ${name} was sent; retry`, {
    retryable: true,
  });
}

function noop(): void {}
