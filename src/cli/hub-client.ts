/**
 * The client side of the hub's local socket (see hub.ts for the protocol):
 * kept apart from the hub process so that every client command can ask the
 * hub for a name without loading the hub, the agent or their dependencies.
 */
import type { Socket } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectLocal, LocalSocketError, readJsonLine, writeJsonLine } from '../transport/index.js';
import { CliError, EXIT } from './errors.js';

/** The hub socket: --socket, else $OUTPOST_HUB, else $XDG_RUNTIME_DIR/outpost/hub.sock, else ~/.outpost/hub.sock. */
export function hubSocketPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return resolve(explicit);
  if (env.OUTPOST_HUB) return resolve(env.OUTPOST_HUB);
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'outpost', 'hub.sock');
  return join(homedir(), '.outpost', 'hub.sock');
}

export async function ask<T>(socketPath: string, req: Record<string, unknown>, timeoutMs = 5000): Promise<T> {
  const s = await connectLocal(socketPath, timeoutMs);
  s.on('error', () => {});
  try {
    writeJsonLine(s, req);
    return await readJsonLine<T>(s);
  } finally {
    s.destroy();
  }
}

/**
 * True when a hub runs at `socketPath` and knows `name` (listed in its
 * agents file, connected or not). No hub there: false, quietly.
 */
export async function hubKnows(name: string, socketPath = hubSocketPath()): Promise<boolean> {
  try {
    const r = await ask<{ ok: boolean; known?: boolean }>(socketPath, { op: 'resolve', agent: name }, 2000);
    return r.ok && r.known === true;
  } catch {
    return false;
  }
}

/** Opens a splice to one idle link of `name` through the hub: the socket the client then handshakes over. */
export async function hubLink(
  name: string,
  options: { socketPath?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<Socket> {
  const socketPath = options.socketPath ?? hubSocketPath();
  const s = await connectLocal(socketPath, 5000);
  s.on('error', () => {});
  const onAbort = () => s.destroy();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    writeJsonLine(s, { op: 'link', agent: name, timeoutMs: options.timeoutMs ?? 10_000 });
    const r = await readJsonLine<{ ok: boolean; error?: string }>(s, 4096);
    if (!r.ok) {
      s.destroy();
      throw new CliError(`hub: ${r.error ?? 'refused'}`, EXIT.CONNECTION);
    }
    return s;
  } catch (err) {
    s.destroy();
    if (err instanceof LocalSocketError)
      throw new CliError(`hub at ${socketPath}: ${err.message}`, EXIT.CONNECTION);
    throw err;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}
