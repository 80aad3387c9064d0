/**
 * The seam for product messages (agent types 1–3: BuildMaster, Otter,
 * Hedgehog). The agent answers meta messages (type 0) itself and hands every
 * product message to a `ProductRouter`; the real router (sessions + host
 * processes) plugs in through `startAgent(config, logger, { router })`.
 *
 * Contract:
 *   - `handle` is called once per product request, in arrival order, with the
 *     raw message and its decoded header (agent type already checked to be
 *     1–3; the command code is NOT checked). It must not throw and must
 *     eventually answer the request's token with a Response or an Error
 *     (plus any Events) via `ctx.reply` — never drop it silently.
 *   - Backpressure: `ctx.reply` returns false when the connection's write
 *     buffer is full. To stop reading further requests from the connection
 *     (e.g. while a host is saturated), call `ctx.throttle()` and call the
 *     function it returns to release. The agent itself also stops reading
 *     while the write buffer is full.
 *   - `connectionClosed` is called when a connection ends (its session may
 *     live on, detached); `sessionClosed` when a session ends (CloseSession,
 *     timeouts, shutdown) — release what it owns then.
 *   - `close` is awaited on agent shutdown.
 */
import {
  AGENT_TYPE_NAMES,
  type AgentType,
  commandName,
  ErrorKind,
  encodeError,
  isProductType,
  type RequestHeader,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import type { Session } from './sessions.js';

/** "1 (BuildMaster), 2 (Otter), 3 (Hedgehog)", from the constants, for error messages. */
export function describeAgentTypes(includeMeta: boolean): string {
  return Object.entries(AGENT_TYPE_NAMES)
    .filter(([n]) => includeMeta || isProductType(Number(n)))
    .map(([n, name]) => `${n} (${name})`)
    .join(', ');
}

export interface ProductRequestContext {
  connection: FramedConnection;
  session: Session;
  header: RequestHeader;
  /** The whole request message (header included). */
  message: Buffer;
  /** Sends a reply on the connection; false when its write buffer is full. */
  reply(message: Buffer): boolean;
  /** Stops reading requests from this connection until the returned function is called. */
  throttle(): () => void;
}

export interface ProductRouter {
  handle(ctx: ProductRequestContext): void;
  /** A connection joined `session` (new or resumed): it may now receive that session's process events. */
  connectionOpened?(connection: FramedConnection, session: Session): void;
  connectionClosed(connection: FramedConnection, session: Session): void;
  sessionClosed(session: Session, reason: string): void;
  close(): Promise<void>;
}

/** The default router: no product host; every product request gets `Error Unsupported` naming the command. */
export class UnsupportedProductRouter implements ProductRouter {
  handle(ctx: ProductRequestContext): void {
    const { agentType, token, command } = ctx.header;
    const product = AGENT_TYPE_NAMES[agentType as AgentType];
    const name = commandName(agentType, command);
    if (!name) {
      ctx.reply(
        encodeError(agentType, token, ErrorKind.UnknownCommand, `unknown ${product} command ${command}`),
      );
      return;
    }
    ctx.reply(
      encodeError(
        agentType,
        token,
        ErrorKind.Unsupported,
        `${product} command ${name} (${command}) is not supported: this agent has no product host configured`,
      ),
    );
  }
  connectionClosed(): void {}
  sessionClosed(): void {}
  async close(): Promise<void> {}
}
