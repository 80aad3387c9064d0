/**
 * Contracts shared by the product host's handler modules (files, processes)
 * and the host's dispatcher. The host runs in a child process of the agent,
 * one per (session, product type); see docs/ARCHITECTURE.md.
 */
import type { ErrorKindName, EventName, EventOf } from '../protocol/index.js';

/** What a handler knows about where it runs. */
export interface HostContext {
  /** The product's root path (created on demand). */
  readonly rootPath: string;
  /** Relative paths in requests resolve against this directory. */
  readonly baseDirectory: string;
  /**
   * When set, every path a request names must resolve inside one of these
   * directories; anything else is `AccessDenied`. Null means unrestricted.
   */
  readonly allowedRoots: readonly string[] | null;
  /** The connection's message limit; results larger than this are `TooLarge`. */
  readonly maxMessageSize: number;
  /** Open file handles allowed per session. */
  readonly maxOpenFiles: number;
  /** Concurrent processes allowed per session. */
  readonly maxProcesses: number;
}

/** A failure that travels to the client as an `Error` message of `kind`. */
export class HostError extends Error {
  override readonly name = 'HostError';
  readonly kind: ErrorKindName;
  constructor(kind: ErrorKindName, message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * Where process events go. `send` returns false when the consumer is
 * saturated: the producer stops reading the child's pipes until
 * `whenWritable()` resolves (so the child blocks on write; nothing is
 * dropped and nothing is buffered without bound).
 */
export interface EventSink {
  send<N extends EventName>(token: number, name: N, data: EventOf<N>): boolean;
  whenWritable(): Promise<void>;
}
