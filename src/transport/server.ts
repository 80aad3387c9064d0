/**
 * The agent's side of the handshake (PROTOCOL.md §2), over one accepted socket:
 *
 *   1. read exactly 24 bytes; bytes that cannot start the protocol GUID fail
 *      at once, without waiting for all 24;
 *   2. validate with `decodeClientHello` — a wrong GUID or version fails and
 *      the caller closes the socket with nothing written;
 *   3. ask the caller which session ID to grant, write the reply: mode, the
 *      random 16-byte handshake IV in AES mode, session ID, agent version
 *      (9 or 25 bytes);
 *   4. mode ssl: start TLS (server side) over the same socket; mode aes: both
 *      IV chains start at the handshake IV.
 *
 * `timeoutMs` and/or `signal` bound all four steps (the agent passes its
 * own signal, whose clock starts at accept, to enforce HandshakeTimeout).
 */
import { randomBytes, type X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket, type TLSSocketOptions } from 'node:tls';
import {
  AES_IV_SIZE,
  CLIENT_HELLO_SIZE,
  type ClientHello,
  decodeClientHello,
  encodeAgentReply,
  isHelloPrefix,
  Mode,
  type ReplayCache,
} from '../protocol/index.js';
import { aesCodec, type EncryptionMode, FramedConnection, plainCodec } from './framed.js';
import { HandshakeError, readExactly } from './read.js';

export const MODE_BYTES: Record<EncryptionMode, Mode> = { none: Mode.None, ssl: Mode.Tls, aes: Mode.Aes };

export interface ServerHandshakeOptions {
  mode: EncryptionMode;
  /** AES key (16, 24 or 32 bytes) for mode aes. */
  key?: Buffer | undefined;
  /** Server certificate and key for mode ssl (TLS ≥ 1.2 is set by whoever made it). */
  secureContext?: SecureContext | undefined;
  /** Ask the client for a certificate (optional for it; never required). */
  requestCert?: boolean;
  maxMessageSize: number;
  /** The agent's version, packed (PROTOCOL.md §2). */
  agentVersion: number;
  /** Mode aes: the process-wide replay cache. */
  replay?: ReplayCache | undefined;
  /** Abort to give up (timeouts, shutdown); the socket is left for the caller to destroy. */
  signal?: AbortSignal | undefined;
  /** Gives up after this long (all steps, TLS included); combined with `signal`. */
  timeoutMs?: number | undefined;
  /**
   * Chooses the session ID to grant (a positive int32) for a valid hello.
   * Throwing refuses the connection before anything is written.
   */
  grantSession(hello: ClientHello): number;
}

export interface ServerHandshakeResult {
  connection: FramedConnection;
  hello: ClientHello;
  sessionId: number;
  /** Mode ssl: the client's certificate, if it presented one. */
  peerCertificate: X509Certificate | null;
}

/** Runs the handshake; on failure the socket is NOT destroyed (the caller does, and logs). */
export async function acceptHandshake(
  socket: Socket,
  options: ServerHandshakeOptions,
): Promise<ServerHandshakeResult> {
  if (options.timeoutMs === undefined) return handshake(socket, options);
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new HandshakeError('TIMEOUT', `no complete handshake within ${options.timeoutMs} ms`)),
    options.timeoutMs,
  );
  const onAbort = () => ac.abort(options.signal?.reason);
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await handshake(socket, { ...options, signal: ac.signal });
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

async function handshake(socket: Socket, options: ServerHandshakeOptions): Promise<ServerHandshakeResult> {
  if (options.mode === 'aes' && !options.key) throw new Error('mode aes needs a key');
  if (options.mode === 'ssl' && !options.secureContext) throw new Error('mode ssl needs a secure context');
  const helloBytes = await readExactly(socket, CLIENT_HELLO_SIZE, {
    signal: options.signal,
    what: 'client hello',
    checkPrefix: isHelloPrefix,
  });
  const hello = decodeClientHello(helloBytes);
  const sessionId = options.grantSession(hello);
  const version = options.agentVersion;
  const label = { mode: options.mode };

  if (options.mode === 'none') {
    socket.write(encodeAgentReply({ mode: Mode.None, sessionId, version }));
    return {
      connection: new FramedConnection(socket, plainCodec('agent', options.maxMessageSize), label),
      hello,
      sessionId,
      peerCertificate: null,
    };
  }
  if (options.mode === 'aes') {
    const iv = randomBytes(AES_IV_SIZE);
    socket.write(encodeAgentReply({ mode: Mode.Aes, iv, sessionId, version }));
    const codec = aesCodec('agent', options.key!, iv, {
      maxMessageSize: options.maxMessageSize,
      replay: options.replay,
    });
    return {
      connection: new FramedConnection(socket, codec, label),
      hello,
      sessionId,
      peerCertificate: null,
    };
  }

  socket.write(encodeAgentReply({ mode: Mode.Tls, sessionId, version }));
  // The TLS stream keeps the high-water mark of the socket under it (the
  // listener's choice); TLSSocket honours the option, @types/node omits it.
  const tlsOptions: TLSSocketOptions & { highWaterMark: number } = {
    isServer: true,
    secureContext: options.secureContext!,
    requestCert: options.requestCert ?? false,
    rejectUnauthorized: false,
    highWaterMark: socket.writableHighWaterMark,
  };
  const tlsSocket = new TLSSocket(socket, tlsOptions);
  await waitForSecure(tlsSocket, options.signal);
  const peerCertificate = tlsSocket.getPeerX509Certificate() ?? null;
  return {
    connection: new FramedConnection(tlsSocket, plainCodec('agent', options.maxMessageSize), label),
    hello,
    sessionId,
    peerCertificate,
  };
}

function waitForSecure(tlsSocket: TLSSocket, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      tlsSocket.off('secure', onSecure);
      tlsSocket.off('error', onError);
      tlsSocket.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const onSecure = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      tlsSocket.on('error', () => {});
      tlsSocket.destroy();
      reject(new HandshakeError('TLS_FAILED', `TLS handshake failed: ${err.message}`, { cause: err }));
    };
    const onClose = () => {
      cleanup();
      reject(new HandshakeError('CLOSED', 'connection closed during the TLS handshake'));
    };
    const onAbort = () => {
      cleanup();
      tlsSocket.on('error', () => {});
      tlsSocket.destroy();
      const reason = signal?.reason;
      reject(
        reason instanceof Error ? reason : new HandshakeError('ABORTED', 'aborted during the TLS handshake'),
      );
    };
    if (signal?.aborted) {
      onAbort();
      return;
    }
    tlsSocket.on('secure', onSecure);
    tlsSocket.on('error', onError);
    tlsSocket.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
