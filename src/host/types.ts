/**
 * Contracts shared by the product host's modules (files, processes, the
 * handler table). The host runs in a child process of the agent, one per
 * (session, product type); see docs/ARCHITECTURE.md.
 */
import type { ErrorKindName, EventName, EventOf, HostSettings } from '../protocol/index.js';

/**
 * What a handler knows about where it runs: the settings the agent sent in
 * Init, defined once in src/protocol/pipe.ts (an alias, not a copy).
 */
export type HostContext = HostSettings;

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
