/**
 * The seam for product messages (agent types 1–3: BuildMaster, Otter,
 * Hedgehog). The agent answers meta messages (type 0) itself and hands every
 * product message to a `ProductRouter`; the real router (sessions + host
 * processes) plugs in through `startAgent(config, logger, { router })`.
 *
 * Contract:
 *   - `handle` is called once per product request, in arrival order, after
 *     the agent has checked the agent type (1–3), that the data holds a
 *     token, and that the command is one of the catalog (`name`); the
 *     arguments are NOT decoded (the host does that). It must not throw and
 *     must eventually answer the token with a Response or an Error (plus any
 *     Events) via `ctx.reply` — never drop it silently — except Cancel,
 *     which has no reply of its own.
 *   - Tokens: a token in flight on the connection, or reserved in the
 *     session (a StartProcess until its Exited is delivered, an ExecuteJob
 *     until its Response/Error is delivered, §5), is refused with
 *     `Error InvalidArgument`; `isTokenReserved` lets the agent apply that
 *     to a connection's first frame, before it joins the session.
 *   - Backpressure: `ctx.reply` returns false when the connection's write
 *     buffer is full. To stop reading further requests from the connection
 *     (e.g. while a host is saturated), call `ctx.throttle()` and call the
 *     function it returns to release. The agent itself also stops reading
 *     while the write buffer is full.
 *   - `connectionOpened` is called once the connection has sent its first
 *     valid frame (after that frame was handed on): buffered events of a
 *     resumed session may go to it from then on (§7).
 *   - `connectionClosed` is called when a connection ends (its session may
 *     live on, detached); `sessionClosed` when a session ends (CloseSession,
 *     timeouts, shutdown) — release what it owns then.
 *   - `close` is awaited on agent shutdown.
 */
import {
  AGENT_TYPE_NAMES,
  ErrorKind,
  encodeError,
  isProductType,
  type Pieces,
  type ProductCommand,
  type ProductType,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import type { SessionProcessInfo } from './session-hosts.js';
import type { Session } from './sessions.js';

/** "1 (Otter), 2 (BuildMaster), 3 (Hedgehog)", from the constants, for error messages. */
export function describeAgentTypes(includeMeta: boolean): string {
  return Object.entries(AGENT_TYPE_NAMES)
    .filter(([n]) => includeMeta || isProductType(Number(n)))
    .map(([n, name]) => `${n} (${name})`)
    .join(', ');
}

export interface ProductRequestContext {
  connection: FramedConnection;
  session: Session;
  agentType: ProductType;
  /** The command, known to the catalog. */
  name: ProductCommand;
  token: number;
  /** The request's data, token included (a view into `message`; only its start when `pieces` is set). */
  data: Buffer;
  /** The whole client message as received, to pass on byte for byte — or, when `pieces` is set, its first piece. */
  message: Buffer;
  /**
   * A large message that spanned socket reads, as those reads' bytes (not
   * copied together): the message to forward. Its first piece is `message`.
   */
  pieces?: Pieces | undefined;
  /** Sends a reply on the connection; false when its write buffer is full. */
  reply(message: Buffer): boolean;
  /** Stops reading requests from this connection until the returned function is called. */
  throttle(): () => void;
}

export interface ProductRouter {
  handle(ctx: ProductRequestContext): void;
  /** True when `token` is reserved in session `sessionId` (which may not exist). */
  isTokenReserved?(sessionId: number, token: number): boolean;
  /** A connection joined `session` (its first valid frame was handled): it may now receive buffered events. */
  connectionOpened?(connection: FramedConnection, session: Session): void;
  connectionClosed(connection: FramedConnection, session: Session): void;
  sessionClosed(session: Session, reason: string): void;
  close(): Promise<void>;
  /** Extensions ps / kill / detach / attach (meta 7, 8, 10, 11); absent: the agent says it lacks them. */
  processControl?: ProcessControl;
}

/** What the meta extensions need of the product side (per session, by ID). */
export interface ProcessControl {
  processes(sessionId: number): SessionProcessInfo[];
  kill(sessionId: number, token: number, tree: boolean): boolean;
  detachToken(session: Session, token: number): void;
  attachToken(sessionId: number, connection: FramedConnection, token: number): boolean;
}

/** The default router: no product host; every product request gets `Error Unsupported` naming the command. */
export class UnsupportedProductRouter implements ProductRouter {
  handle(ctx: ProductRequestContext): void {
    if (ctx.name === 'Cancel') return; // no reply of its own, and nothing runs to cancel
    const product = AGENT_TYPE_NAMES[ctx.agentType];
    ctx.reply(
      encodeError(
        ctx.token,
        ErrorKind.Unsupported,
        `${product} command ${ctx.name} is not supported: this agent has no product host configured`,
      ),
    );
  }
  connectionClosed(): void {}
  sessionClosed(): void {}
  async close(): Promise<void> {}
}
