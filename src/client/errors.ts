/**
 * The SDK's errors. Every failure the SDK reports is an {@link OutpostError}
 * with a machine-readable `code`:
 *
 * - {@link RemoteError}: the agent answered with an Error message; `code` is
 *   the wire kind name (`'NotFound'`, `'AccessDenied'`, …) and `path` the
 *   path the request named, when there was one.
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
import { type ErrorKindName, errorKindName } from '../protocol/index.js';

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

/** The agent answered a request with an Error message (PROTOCOL.md §5, "Error kinds"). */
export class RemoteError extends OutpostError {
  override name = 'RemoteError';
  declare readonly code: ErrorKindName;
  /** The numeric error kind from the wire. */
  readonly errorKind: number;
  /** The command that failed, e.g. `'ReadAllBytes'`. */
  readonly command: string;

  constructor(errorKind: number, agentMessage: string, command: string, path?: string) {
    const code = errorKindName(errorKind);
    const text = agentMessage.startsWith(`${code}:`) ? agentMessage : `${code}: ${agentMessage}`;
    super(code, `${text} (${command})`, { path, retryable: code === 'HostCrashed' });
    this.errorKind = errorKind;
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
export function isRemoteError(err: unknown, code?: ErrorKindName): err is RemoteError {
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
