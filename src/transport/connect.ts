/**
 * The client's side of the handshake: connect, send the 24-byte hello, read
 * the agent's reply (and the handshake IV in AES mode), start TLS over the
 * same socket in mode ssl, and hand back a `FramedConnection`.
 *
 * TLS is ≥ 1.2 and the agent must be verified: by `ca` (the agent's
 * certificate or the CA that issued it; the host name is checked as usual),
 * by a pinned `thumbprint` (SHA-256 of the DER certificate), or both. With
 * neither, connecting fails unless `insecure: true` is passed.
 */
import { isIP, type Socket, connect as tcpConnect } from 'node:net';
import { DEFAULT_CIPHERS, type TLSSocket, connect as tlsConnect } from 'node:tls';
import {
  aesAlgorithm,
  agentReplySize,
  DEFAULT_MAX_MESSAGE_SIZE,
  decodeAgentReply,
  encodeClientHello,
  MAX_MAX_MESSAGE_SIZE,
  MIN_MAX_MESSAGE_SIZE,
  MODE_NAMES,
} from '../protocol/index.js';
import { aesCodec, type EncryptionMode, FramedConnection, plainCodec } from './framed.js';
import { HandshakeError, readExactly } from './read.js';
import { formatThumbprint, normalizeThumbprint, thumbprintOfDer } from './thumbprint.js';

/**
 * Node's defaults with AES-128-GCM first among the TLS 1.3 suites: it is a
 * quarter faster than AES-256-GCM here, as strong as the peer needs (ssh's
 * default too), and still only a preference: an agent may choose another.
 */
const CLIENT_CIPHERS = `TLS_AES_128_GCM_SHA256:${DEFAULT_CIPHERS.split(':')
  .filter((c) => c !== 'TLS_AES_128_GCM_SHA256')
  .join(':')}`;

export interface ConnectOptions {
  host: string;
  port: number;
  mode: EncryptionMode;
  /** Mode aes: the shared key (16, 24 or 32 bytes). */
  key?: Buffer | undefined;
  /** Mode ssl: PEM of the agent's certificate or of its CA. */
  ca?: string | Buffer | undefined;
  /** Mode ssl: pinned SHA-256 thumbprint of the agent's certificate (colons and case ignored). */
  thumbprint?: string | undefined;
  /** Mode ssl: accept any certificate (testing only). */
  insecure?: boolean | undefined;
  /** Mode ssl: name to verify the certificate against (defaults to `host`). */
  servername?: string | undefined;
  /** Session to resume; 0 or absent for a new one. */
  sessionId?: number | undefined;
  /** For the whole handshake, TCP connect included (default 10 s). */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Largest data length accepted from the agent (default 64 MiB). */
  maxMessageSize?: number | undefined;
}

export interface AgentConnection {
  connection: FramedConnection;
  sessionId: number;
  mode: EncryptionMode;
  /** The agent's version, packed `major<<24 | minor<<16 | build<<8 | revision` (see `formatVersion`). */
  version: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const KEEPALIVE_DELAY_MS = 30_000;

export async function connectToAgent(options: ConnectOptions): Promise<AgentConnection> {
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  if (
    !Number.isInteger(maxMessageSize) ||
    maxMessageSize < MIN_MAX_MESSAGE_SIZE ||
    maxMessageSize > MAX_MAX_MESSAGE_SIZE
  )
    throw new RangeError(
      `maxMessageSize must be between ${MIN_MAX_MESSAGE_SIZE} and ${MAX_MAX_MESSAGE_SIZE}`,
    );
  let pinned: string | null = null;
  if (options.mode === 'aes') {
    if (!options.key) throw new TypeError('mode aes needs the agent\'s key (option "key")');
    aesAlgorithm(options.key); // throws unless 16, 24 or 32 bytes
  } else if (options.mode === 'ssl') {
    if (options.thumbprint !== undefined) {
      pinned = normalizeThumbprint(options.thumbprint);
      if (!pinned) throw new TypeError('thumbprint must be 64 hex digits (SHA-256), colons optional');
    }
    if (!pinned && !options.ca && !options.insecure)
      throw new TypeError(
        'mode ssl needs a way to verify the agent: pass "ca" (its certificate or CA in PEM) or "thumbprint" ' +
          '(the SHA-256 thumbprint that `outpost init` printed); "insecure: true" skips verification',
      );
  } else if (options.mode !== 'none') {
    throw new TypeError(`unknown mode ${JSON.stringify(options.mode)}: expected none, ssl or aes`);
  }

  const where = `${options.host}:${options.port}`;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const abort = new AbortController();
  let connected = false;
  const timer = setTimeout(
    () =>
      abort.abort(
        new HandshakeError(
          'TIMEOUT',
          connected
            ? `${where} accepted the connection but sent no handshake reply within ${timeoutMs} ms, so it is probably not an Inedo agent (an HTTP or other server?)`
            : `handshake with the agent at ${where} timed out after ${timeoutMs} ms`,
        ),
      ),
    timeoutMs,
  );
  const onOuterAbort = () =>
    abort.abort(
      options.signal?.reason ?? new HandshakeError('ABORTED', `connecting to ${where} was aborted`),
    );
  if (options.signal?.aborted) onOuterAbort();
  else options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const socket = tcpConnect({
    host: options.host,
    port: options.port,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: KEEPALIVE_DELAY_MS,
  });
  let tlsSocket: TLSSocket | null = null;
  const onAbort = () => {
    tlsSocket?.destroy();
    socket.destroy();
  };
  abort.signal.addEventListener('abort', onAbort, { once: true });
  socket.on('error', () => {}); // reported through the promises below
  try {
    await waitForConnect(socket, where, abort.signal);
    connected = true;
    return await handshakeOn(
      socket,
      options,
      { pinned, where, maxMessageSize, signal: abort.signal },
      (t) => {
        tlsSocket = t;
      },
    );
  } catch (err) {
    (tlsSocket as TLSSocket | null)?.destroy();
    socket.destroy();
    if (abort.signal.aborted && abort.signal.reason instanceof Error) throw abort.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    abort.signal.removeEventListener('abort', onAbort);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** Options of {@link connectOverLink}. */
export interface LinkHandshakeOptions {
  /** The mode the agent answers on this link: 'none' for an outbound agent (TLS is underneath), or 'aes'. */
  mode: 'none' | 'aes';
  key?: Buffer | undefined;
  sessionId?: number | undefined;
  /** How errors name the agent. */
  where: string;
  /** For the hello and reply (default 10 s). */
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  maxMessageSize?: number | undefined;
}

/**
 * The client handshake over a stream that is already connected to an agent
 * (an outbound agent's TLS link, or a hub's splice to one): hello, reply,
 * framing. On failure the socket is destroyed.
 */
export async function connectOverLink(
  socket: Socket,
  options: LinkHandshakeOptions,
): Promise<AgentConnection> {
  if (options.mode !== 'none' && options.mode !== 'aes')
    throw new TypeError(`a link carries mode none (outbound agents) or aes, not ${String(options.mode)}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const abort = new AbortController();
  const timer = setTimeout(
    () =>
      abort.abort(
        new HandshakeError('TIMEOUT', `handshake with ${options.where} timed out after ${timeoutMs} ms`),
      ),
    timeoutMs,
  );
  const onOuterAbort = () =>
    abort.abort(
      options.signal?.reason ?? new HandshakeError('ABORTED', `connecting to ${options.where} was aborted`),
    );
  if (options.signal?.aborted) onOuterAbort();
  else options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  socket.on('error', () => {});
  try {
    return await handshakeOn(
      socket,
      { mode: options.mode, key: options.key, sessionId: options.sessionId },
      {
        pinned: null,
        where: options.where,
        maxMessageSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
        signal: abort.signal,
      },
      () => {},
    );
  } catch (err) {
    socket.destroy();
    if (abort.signal.aborted && abort.signal.reason instanceof Error) throw abort.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

interface HandshakeContext {
  pinned: string | null;
  where: string;
  maxMessageSize: number;
  signal: AbortSignal;
}

/** Hello, reply, and (mode ssl) TLS over a connected socket. */
async function handshakeOn(
  socket: Socket,
  options: Pick<ConnectOptions, 'mode' | 'key' | 'sessionId'> & Partial<ConnectOptions>,
  { pinned, where, maxMessageSize, signal }: HandshakeContext,
  onTls: (t: TLSSocket) => void,
): Promise<AgentConnection> {
  socket.write(encodeClientHello({ sessionId: options.sessionId ?? 0 }));
  const refused = (err: unknown) => {
    if (err instanceof HandshakeError && err.code === 'CLOSED')
      throw new HandshakeError(
        'REFUSED',
        `the agent at ${where} closed the connection during the handshake (not an Outpost/Inedo agent of protocol v1, or this address is not in its AllowedAddresses)`,
      );
    throw err;
  };
  // The mode byte says how long the reply is (9 bytes, or 25 with the AES IV).
  const modeByte = await readExactly(socket, 1, { signal, what: "agent's handshake reply" }).catch(refused);
  // A server that speaks first (ssh, smtp, …) is not an agent: say so at once.
  const first = modeByte[0]!;
  if (first !== 0 && first !== 1 && first !== 2)
    throw new HandshakeError(
      'NOT_AGENT',
      `what answers at ${where} is not an Inedo agent: its first byte 0x${first.toString(16).padStart(2, '0')}${first >= 0x20 && first < 0x7f ? ` ("${String.fromCharCode(first)}")` : ''} is no handshake reply (another server listens on that port)`,
    );
  const rest = await readExactly(socket, agentReplySize(modeByte[0]!) - 1, {
    signal,
    what: "agent's handshake reply",
  }).catch(refused);
  const reply = decodeAgentReply(Buffer.concat([modeByte, rest]));
  const agentMode = MODE_NAMES[reply.mode];
  if (agentMode !== options.mode)
    throw new HandshakeError(
      'MODE_MISMATCH',
      `the agent at ${where} uses encryption mode "${agentMode}" but this client asked for "${options.mode}"; use the agent's mode and its key or certificate`,
    );
  if (options.mode === 'aes') {
    const codec = aesCodec('client', options.key!, reply.iv!, { maxMessageSize });
    return {
      connection: new FramedConnection(socket, codec, { mode: 'aes' }),
      sessionId: reply.sessionId,
      mode: agentMode,
      version: reply.version,
    };
  }
  if (options.mode === 'ssl') {
    const tlsSocket = await startTls(socket, options as ConnectOptions, pinned, where, signal);
    onTls(tlsSocket);
    const connection = new FramedConnection(tlsSocket, plainCodec('client', maxMessageSize), { mode: 'ssl' });
    return { connection, sessionId: reply.sessionId, mode: agentMode, version: reply.version };
  }
  const connection = new FramedConnection(socket, plainCodec('client', maxMessageSize), { mode: 'none' });
  return { connection, sessionId: reply.sessionId, mode: agentMode, version: reply.version };
}

function waitForConnect(socket: Socket, where: string, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      socket.off('connect', onConnect);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onConnect = () => {
      cleanup();
      resolve();
    };
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      reject(
        new HandshakeError(
          'CONNECT_FAILED',
          `cannot connect to the agent at ${where}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    const onAbort = () => {
      cleanup();
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    socket.on('connect', onConnect);
    socket.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function startTls(
  socket: Socket,
  options: ConnectOptions,
  pinned: string | null,
  where: string,
  signal: AbortSignal,
): Promise<TLSSocket> {
  return new Promise<TLSSocket>((resolve, reject) => {
    // The name the certificate must carry (SAN DNS name or IP address); SNI only for DNS names.
    const name = options.servername ?? options.host;
    const verifyByCa = options.ca !== undefined;
    const tlsSocket = tlsConnect({
      socket,
      host: name,
      ...(isIP(name) ? {} : { servername: name }),
      minVersion: 'TLSv1.2',
      ciphers: CLIENT_CIPHERS,
      ca: options.ca,
      rejectUnauthorized: verifyByCa,
    });
    const cleanup = () => {
      tlsSocket.off('secureConnect', onSecure);
      tlsSocket.off('error', onError);
      tlsSocket.off('close', onClose);
      signal.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error) => {
      cleanup();
      tlsSocket.on('error', () => {});
      tlsSocket.destroy();
      reject(err);
    };
    const onSecure = () => {
      if (pinned) {
        const der = tlsSocket.getPeerX509Certificate()?.raw;
        const presented = der ? thumbprintOfDer(der) : '(none)';
        if (!der || normalizeThumbprint(presented) !== pinned)
          return fail(
            new HandshakeError(
              'THUMBPRINT_MISMATCH',
              `the agent at ${where} presented a certificate with thumbprint ${presented}, expected ${formatThumbprint(pinned)}`,
            ),
          );
      }
      cleanup();
      resolve(tlsSocket);
    };
    const onError = (err: NodeJS.ErrnoException) =>
      fail(
        new HandshakeError(
          'TLS_FAILED',
          `TLS with the agent at ${where} failed: ${err.message}${err.code ? ` (${err.code})` : ''}`,
          { cause: err },
        ),
      );
    const onClose = () =>
      fail(
        new HandshakeError('CLOSED', `the agent at ${where} closed the connection during the TLS handshake`),
      );
    const onAbort = () => fail(signal.reason);
    tlsSocket.on('secureConnect', onSecure);
    tlsSocket.on('error', onError);
    tlsSocket.on('close', onClose);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
