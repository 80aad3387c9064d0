/**
 * Reading a fixed number of bytes from a socket before framing starts (the
 * handshake). Bytes beyond the requested count are put back into the socket
 * (`unshift`), so whatever comes next — frames, or a TLS ClientHello —
 * reaches the next reader intact.
 */
import type { Duplex } from 'node:stream';

export class HandshakeError extends Error {
  override readonly name = 'HandshakeError';
  /** Machine-readable reason, e.g. 'CLOSED', 'ABORTED', 'BAD_PREFIX'. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export interface ReadExactlyOptions {
  signal?: AbortSignal | undefined;
  /**
   * Called with the bytes received so far; return false to fail at once
   * (e.g. a GUID prefix that cannot match) instead of waiting for all of them.
   */
  checkPrefix?: (prefix: Buffer) => boolean;
  /** Describes what is read, for error messages. */
  what?: string;
}

/** Resolves with exactly `n` bytes, or rejects if the socket ends, errors or the signal aborts first. */
export function readExactly(socket: Duplex, n: number, options: ReadExactlyOptions = {}): Promise<Buffer> {
  const what = options.what ?? `${n} bytes`;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    let done = false;
    const cleanup = () => {
      done = true;
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error) => {
      if (done) return;
      cleanup();
      reject(err);
    };
    const onEnd = () =>
      fail(
        new HandshakeError(
          'CLOSED',
          `connection closed while reading the ${what} (got ${have} of ${n} bytes)`,
        ),
      );
    const onError = (err: Error) =>
      fail(
        new HandshakeError('SOCKET_ERROR', `connection failed while reading the ${what}: ${err.message}`, {
          cause: err,
        }),
      );
    const onAbort = () => {
      const reason = options.signal?.reason;
      fail(
        reason instanceof Error ? reason : new HandshakeError('ABORTED', `aborted while reading the ${what}`),
      );
    };
    const onReadable = () => {
      if (done) return;
      let chunk: Buffer | null;
      // biome-ignore lint/suspicious/noAssignInExpressions: the standard read loop
      while (have < n && (chunk = socket.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        have += chunk.length;
        if (options.checkPrefix && !options.checkPrefix(Buffer.concat(chunks, Math.min(have, n)))) {
          fail(new HandshakeError('BAD_PREFIX', `unexpected bytes instead of the ${what}`));
          return;
        }
      }
      if (have < n) return;
      const all = Buffer.concat(chunks, have);
      if (have > n) socket.unshift(all.subarray(n));
      cleanup();
      resolve(all.subarray(0, n));
    };
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    onReadable();
  });
}
