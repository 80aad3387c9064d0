/**
 * The SDK's errors. Every failure the SDK reports is an {@link OutpostError}
 * with a machine-readable `code`:
 *
 * - {@link RemoteError}: the agent answered with an Error message; `code` is
 *   the wire kind (`'NotFound'`, `'AccessDenied'`, `'Canceled'`, …; an
 *   unknown kind is `'RemoteFailure'`) and `path` the path the request named.
 * - {@link MetaError}: the agent answered a meta request with MetaError.
 * - {@link ConnectionError}: the connection dropped, was closed, or the
 *   session was lost ({@link SessionLostError}); `retryable` says whether
 *   the same call may succeed once the client has reconnected.
 * - {@link HandshakeError}: connecting failed (refused, wrong mode, TLS or
 *   thumbprint mismatch).
 * - {@link TimeoutError} and {@link AbortError}: a deadline passed or an
 *   `AbortSignal` fired.
 * - {@link VerificationError}: a transfer's SHA-256 did not match; the
 *   target was left untouched.
 *
 * Mistakes in the arguments (a bad path type, a negative chunk size…) are
 * thrown as `TypeError` / `RangeError` before anything is sent.
 */
import { type ErrorKindName, isErrorKind } from '../protocol/index.js';

/** Options shared by every SDK error. */
export interface OutpostErrorOptions {
  /** The underlying error, when there is one. */
  cause?: unknown;
  /** The path the failed operation named (remote or local). */
  path?: string | undefined;
  /** True when repeating the same call may succeed (e.g. after a reconnect). */
  retryable?: boolean;
}

/** Base class of every error the SDK raises on purpose. */
export class OutpostError extends Error {
  override name = 'OutpostError';
  /** Machine-readable reason: a wire kind name (`'NotFound'`) or an SDK code (`'CONNECTION_LOST'`). */
  readonly code: string;
  /** The path involved, when known. */
  readonly path: string | undefined;
  /** True when repeating the same call may succeed (e.g. after a reconnect). */
  readonly retryable: boolean;

  constructor(code: string, message: string, options: OutpostErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.path = options.path;
    this.retryable = options.retryable ?? false;
  }
}

/** What the SDK makes of each wire error kind (PROTOCOL.md §5.2): one table, spelled once. */
const REMOTE_KINDS: Record<ErrorKindName, { retryable: boolean }> = {
  NotFound: { retryable: false },
  AlreadyExists: { retryable: false },
  AccessDenied: { retryable: false },
  IsDirectory: { retryable: false },
  NotDirectory: { retryable: false },
  NotEmpty: { retryable: false },
  InvalidArgument: { retryable: false },
  TooLarge: { retryable: false },
  Unsupported: { retryable: false },
  Canceled: { retryable: false },
  Timeout: { retryable: true },
  // The session's host process crashed; the agent starts a new one for the next request.
  HostCrashed: { retryable: true },
  IOError: { retryable: false },
  Internal: { retryable: false },
  // A configured limit (open handles, processes, hosts) is reached; it frees up as work ends.
  LimitExceeded: { retryable: true },
};

/** `code` of a {@link RemoteError} whose wire kind this SDK does not know. */
export const UNKNOWN_REMOTE_KIND = 'RemoteFailure';

/**
 * The agent answered a product request with an Error message (PROTOCOL.md
 * §5.2). `code` is the wire kind (`'NotFound'`, `'Canceled'`, …) or, for a
 * kind this SDK does not know, `'RemoteFailure'`; `kind` always holds the
 * string the agent sent, and `detail` its optional detail text.
 */
export class RemoteError extends OutpostError {
  override name = 'RemoteError';
  declare readonly code: ErrorKindName | typeof UNKNOWN_REMOTE_KIND;
  /** The error kind exactly as it came over the wire. */
  readonly kind: string;
  /** The agent's optional detail text (e.g. an OS error), or null. */
  readonly detail: string | null;
  /** The command that failed, e.g. `'ReadAllBytes'`. */
  readonly command: string;

  constructor(
    kind: string,
    agentMessage: string,
    command: string,
    options: { path?: string | undefined; detail?: string | null } = {},
  ) {
    const known = isErrorKind(kind);
    const code = known ? kind : UNKNOWN_REMOTE_KIND;
    const detail = options.detail ?? null;
    const text = agentMessage.startsWith(`${kind}:`) ? agentMessage : `${kind}: ${agentMessage}`;
    super(code, `${text}${detail ? ` (${detail})` : ''} (${command})`, {
      path: options.path,
      retryable: known && REMOTE_KINDS[kind].retryable,
    });
    this.kind = kind;
    this.detail = detail;
    this.command = command;
  }
}

/**
 * The agent answered a meta request (agent type 0) with MetaError (code 9):
 * e.g. an UpdateAgent it could not store, or a request it does not know.
 */
export class MetaError extends OutpostError {
  override name = 'MetaError';
  declare readonly code: 'MetaError';
  /** The command code the agent says failed (the request's own code). */
  readonly requestCommand: number;
  /** The SDK's name of the failed request, e.g. `'UpdateAgent'`. */
  readonly command: string;

  constructor(requestCommand: number, agentMessage: string, command: string) {
    super('MetaError', `${command} failed on the agent: ${agentMessage}`);
    this.requestCommand = requestCommand;
    this.command = command;
  }
}

/** Reasons a {@link ConnectionError} carries in `code`. */
export type ConnectionErrorCode =
  /** The connection dropped while the request was in flight. */
  | 'CONNECTION_LOST'
  /** The client was closed with `close()` (the session lives on). */
  | 'CLOSED'
  /** The session ended with `closeSession()`. */
  | 'SESSION_CLOSED'
  /** The connection is down and automatic reconnection is off or gave up. */
  | 'NOT_CONNECTED'
  /** The agent granted a new session on reconnect: everything of the old one is gone. */
  | 'SESSION_LOST'
  /** The agent sent something the protocol does not allow. */
  | 'PROTOCOL';

/** The connection failed, was closed, or the session was lost. */
export class ConnectionError extends OutpostError {
  override name = 'ConnectionError';
  declare readonly code: ConnectionErrorCode;

  constructor(code: ConnectionErrorCode, message: string, options: OutpostErrorOptions = {}) {
    super(code, message, options);
  }
}

/**
 * On reconnect the agent granted a different session ID: the old session
 * ended (it timed out while detached, or was closed). Its processes, open
 * handles and pending requests are gone; the client now uses the new session.
 */
export class SessionLostError extends ConnectionError {
  override name = 'SessionLostError';
  /** The session that was lost. */
  readonly previousSessionId: number;
  /** The session the agent granted instead. */
  readonly newSessionId: number;

  constructor(previousSessionId: number, newSessionId: number) {
    super(
      'SESSION_LOST',
      `session ${previousSessionId} was lost (the agent granted a new session ${newSessionId} on reconnect); ` +
        'its processes, open files and pending requests are gone',
    );
    this.previousSessionId = previousSessionId;
    this.newSessionId = newSessionId;
  }
}

/**
 * Connecting to the agent failed. `code` is one of `CONNECT_FAILED`,
 * `REFUSED`, `MODE_MISMATCH`, `TLS_FAILED`, `THUMBPRINT_MISMATCH`,
 * `CLOSED`, `SOCKET_ERROR`; the message names the address and what to fix.
 */
export class HandshakeError extends OutpostError {
  override name = 'HandshakeError';
}

/** A deadline (`timeoutMs`, `AbortSignal.timeout()`) passed. */
export class TimeoutError extends OutpostError {
  override name = 'TimeoutError';
  constructor(message: string, options: OutpostErrorOptions = {}) {
    super('TIMEOUT', message, options);
  }
}

/** An `AbortSignal` fired; `cause` holds the signal's reason. */
export class AbortError extends OutpostError {
  override name = 'AbortError';
  constructor(message = 'the operation was aborted', options: OutpostErrorOptions = {}) {
    super('ABORT_ERR', message, options);
  }
}

/** A transfer's checksum did not match; the target was not replaced. */
export class VerificationError extends OutpostError {
  override name = 'VerificationError';
  /** Hex SHA-256 of the source. */
  readonly expected: string;
  /** Hex SHA-256 of what arrived. */
  readonly actual: string;
  constructor(path: string, expected: string, actual: string) {
    super(
      'HASH_MISMATCH',
      `SHA-256 mismatch for ${path}: expected ${expected}, got ${actual}; the target was left unchanged`,
      { path, retryable: true },
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/** True when `err` is a {@link RemoteError}, optionally of the given wire kind. */
export function isRemoteError(
  err: unknown,
  code?: ErrorKindName | typeof UNKNOWN_REMOTE_KIND,
): err is RemoteError {
  return err instanceof RemoteError && (code === undefined || err.code === code);
}

/** The error to reject with when `signal` fired: a {@link TimeoutError} for timeouts, else an {@link AbortError}. */
export function abortReason(signal: AbortSignal, what = 'the operation'): OutpostError {
  const reason: unknown = signal.reason;
  if (reason instanceof OutpostError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError')
    return new TimeoutError(`${what} timed out`, { cause: reason });
  return new AbortError(`${what} was aborted`, { cause: reason });
}

/** Throws the abort error when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what?: string): void {
  if (signal?.aborted) throw abortReason(signal, what);
}
