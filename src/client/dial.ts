/**
 * Dialing for the channel (internal): connectToAgent with its errors turned
 * into the SDK's, the half-close a deliberate reconnect uses, and small
 * abortable waits.
 */
import type { Socket } from 'node:net';
import {
  type AgentConnection,
  type ConnectOptions,
  connectOverLink,
  connectToAgent,
  type FramedConnection,
  HandshakeError as TransportHandshakeError,
} from '../transport/index.js';
import { AbortError, abortReason, HandshakeError, OutpostError, TimeoutError } from './errors.js';

/** How long a graceful close waits for the agent before destroying the socket. */
export const HALF_CLOSE_TIMEOUT_MS = 5000;

/**
 * Where a client's connections come from instead of a TCP dial: a stream
 * already connected to the agent (an outbound agent's link taken from an
 * `AgentListener`, a hub's splice). Called once per connection, reconnects
 * included; the client runs the handshake over it.
 */
export type LinkSource = (signal: AbortSignal | undefined) => Promise<Socket>;

/** A link that closes before the agent's reply (an idle link the agent was just replacing) is retried this often. */
const LINK_ATTEMPTS = 3;

/** connectToAgent (or the handshake over a link) with its errors translated to the SDK's. */
export async function dial(
  options: Omit<ConnectOptions, 'sessionId' | 'signal'>,
  sessionId: number,
  signal: AbortSignal | undefined,
  link?: LinkSource,
): Promise<AgentConnection> {
  try {
    if (!link) return await connectToAgent({ ...options, sessionId, signal });
    for (let attempt = 1; ; attempt++) {
      const socket = await link(signal);
      try {
        return await connectOverLink(socket, {
          mode: options.mode === 'aes' ? 'aes' : 'none',
          key: options.key,
          sessionId,
          where: `agent ${options.host}`,
          timeoutMs: options.timeoutMs,
          signal,
          maxMessageSize: options.maxMessageSize,
        });
      } catch (err) {
        if (attempt >= LINK_ATTEMPTS || !(err instanceof TransportHandshakeError) || err.code !== 'REFUSED')
          throw err;
      }
    }
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
export function halfClose(conn: FramedConnection): Promise<void> {
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

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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
