/**
 * Owner-only local sockets (Unix domain sockets): the one room for the agent's
 * control socket (`outpost status`, `outpost reload`) and the hub's socket
 * (CLI commands reaching outbound agents by name).
 *
 * Permissions: the socket's directory is created 0700 when missing and must
 * not be writable by group or others; the socket itself is chmod 0600 right
 * after listen (the 0700 directory closes the window in between). A socket
 * file left behind by a dead process is replaced; one that answers is not.
 *
 * Framing helpers: a request is one JSON line (`\n`-terminated, at most
 * MAX_LINE bytes); after it, a socket may carry a JSON reply line or raw bytes
 * (the hub splices the rest to an agent link).
 */
import { chmod, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

/** Longest request or reply line accepted (bytes, newline excluded). */
export const MAX_LINE = 1024 * 1024;

export class LocalSocketError extends Error {
  override name = 'LocalSocketError';
}

/** Makes sure `dir` exists, is a directory of ours and is not group/world writable. */
async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new LocalSocketError(`${dir} is not a directory`);
  if ((st.mode & 0o022) !== 0) {
    throw new LocalSocketError(
      `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 ${dir}`,
    );
  }
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new LocalSocketError(
      `${dir} belongs to another user (uid ${st.uid}); choose a directory of your own`,
    );
  }
}

/** True when something accepts connections on the socket at `path`. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Listens on `path` with owner-only permissions. Replaces a stale socket
 * file; refuses when another process answers there or the path is not a
 * socket.
 */
export async function listenLocal(path: string, onConnection: (socket: Socket) => void): Promise<Server> {
  await ensurePrivateDir(dirname(path));
  const existing = await lstat(path).catch(() => null);
  if (existing) {
    if (!existing.isSocket()) throw new LocalSocketError(`${path} exists and is not a socket; move it away`);
    if (await socketAnswers(path)) {
      throw new LocalSocketError(`another process is already listening on ${path}`);
    }
    await unlink(path);
  }
  const server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  return server;
}

/** Connects to a local socket; the error names the path and what to check. */
export function connectLocal(path: string, timeoutMs = 5000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new LocalSocketError(`no answer on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? 'nothing is listening there'
          : err.code === 'EACCES'
            ? 'permission denied (run as the user that owns it)'
            : err.message;
      reject(new LocalSocketError(`cannot connect to ${path}: ${why}`));
    });
  });
}

/** Writes one JSON line. */
export function writeJsonLine(socket: Socket, value: unknown): boolean {
  return socket.write(`${JSON.stringify(value)}\n`);
}

/**
 * Reads one `\n`-terminated line and parses it as JSON. Bytes after the line
 * are pushed back (`unshift`) so the socket can be read or piped on. Rejects
 * on a line over MAX_LINE bytes, bad JSON, or the socket ending first.
 */
export function readJsonLine<T = unknown>(socket: Socket, maxLine = MAX_LINE): Promise<T> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onEnd);
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onEnd = () => fail(new LocalSocketError('the local socket closed before a complete line'));
    const onError = (err: Error) => fail(err);
    const onReadable = () => {
      for (;;) {
        const chunk: Buffer | null = socket.read();
        if (chunk === null) return;
        const nl = chunk.indexOf(0x0a);
        if (nl < 0) {
          size += chunk.length;
          if (size > maxLine) return fail(new LocalSocketError(`a line passed ${maxLine} bytes`));
          parts.push(chunk);
          continue;
        }
        if (size + nl > maxLine) return fail(new LocalSocketError(`a line passed ${maxLine} bytes`));
        parts.push(chunk.subarray(0, nl));
        const rest = chunk.subarray(nl + 1);
        cleanup();
        if (rest.length > 0) socket.unshift(rest);
        try {
          resolve(JSON.parse(Buffer.concat(parts).toString('utf8')) as T);
        } catch {
          reject(new LocalSocketError('a line was not valid JSON'));
        }
        return;
      }
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
    onReadable();
  });
}
