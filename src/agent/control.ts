/**
 * The agent's control socket (docs/OPERATIONS.md): a Unix socket at
 * `ControlSocket` (default `<config dir>/state/control.sock`), mode 0600 in
 * a 0700 directory, so only the agent's user (and root) may ask. One JSON
 * line in, one JSON line out, then the agent closes:
 *
 *   {"command":"status"}  → {"ok":true,"status":{…AgentStatus…}}
 *   {"command":"reload"}  → {"ok":true,"applied":[…],"restartRequired":[…],"warnings":[…]}
 *                         | {"ok":false,"error":"Listener/Port: …"}   (the running config stays)
 *
 * SIGHUP runs the same reload as the `reload` command.
 */
import type { Server, Socket } from 'node:net';
import { connectLocal, listenLocal, readJsonLine, writeJsonLine } from '../transport/index.js';
import type { AgentHandle } from './agent.js';
import { ConfigError, loadConfig } from './config.js';
import type { Logger } from './log.js';
import type { AgentStatus } from './status.js';

export type ControlRequest = { command: 'status' } | { command: 'reload' };

export type ReloadAnswer =
  | { ok: true; applied: string[]; restartRequired: string[]; warnings: string[] }
  | { ok: false; error: string };

export type ControlAnswer = { ok: true; status: AgentStatus } | ReloadAnswer | { ok: false; error: string };

/** An idle control connection is closed after this. */
const CONTROL_IDLE_MS = 10_000;
/** Longest answer the CLI reads (status of about 200 000 sessions). */
const MAX_ANSWER = 64 * 1024 * 1024;
/** Requests are a few bytes; anything longer is not ours. */
const MAX_REQUEST = 4096;

/**
 * Re-reads the agent's config file and applies it. Any error refuses the
 * whole file (the running config stays) and is the answer's `error`.
 */
export async function reloadFromFile(agent: AgentHandle, logger: Logger): Promise<ReloadAnswer> {
  const path = agent.config.configPath;
  if (!path) return { ok: false, error: 'this agent was not started from a config file' };
  let next: Awaited<ReturnType<typeof loadConfig>>;
  try {
    next = await loadConfig(path);
  } catch (err) {
    const error = err instanceof ConfigError ? err.message : `cannot load ${path}: ${String(err)}`;
    logger.error(
      { config: path, error },
      'reload refused: the config has an error; the running config stays',
    );
    return { ok: false, error };
  }
  const plan = agent.reload(next);
  for (const w of next.warnings) logger.warn({ config: path }, w);
  logger.info(
    { config: path, applied: plan.applied, restartRequired: plan.restartRequired },
    'config reloaded',
  );
  return { ok: true, applied: plan.applied, restartRequired: plan.restartRequired, warnings: next.warnings };
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Listens on `path` (owner-only) and answers status and reload requests. */
export async function startControlSocket(
  path: string,
  agent: AgentHandle,
  logger: Logger,
  reload: () => Promise<ReloadAnswer> = () => reloadFromFile(agent, logger),
): Promise<ControlServer> {
  const sockets = new Set<Socket>();
  const server: Server = await listenLocal(path, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setTimeout(CONTROL_IDLE_MS, () => socket.destroy());
    void answer(socket);
  });
  const answer = async (socket: Socket) => {
    let reply: ControlAnswer;
    try {
      const req = await readJsonLine<Partial<ControlRequest>>(socket, MAX_REQUEST);
      if (req?.command === 'status') reply = { ok: true, status: agent.status() };
      else if (req?.command === 'reload') reply = await reload();
      else
        reply = {
          ok: false,
          error: `unknown command ${JSON.stringify(req?.command)}: expected status or reload`,
        };
    } catch (err) {
      reply = { ok: false, error: (err as Error).message };
    }
    if (!socket.destroyed) {
      writeJsonLine(socket, reply);
      socket.end();
    }
  };
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Sends one control request to the agent at `path` and returns its answer (the CLI's side). */
export async function requestControl(
  path: string,
  request: ControlRequest,
  timeoutMs = 15_000,
): Promise<ControlAnswer> {
  const socket = await connectLocal(path, timeoutMs);
  try {
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new Error(`no answer on ${path} within ${timeoutMs} ms`)),
    );
    writeJsonLine(socket, request);
    // A status of many thousand sessions is megabytes on one line.
    return await readJsonLine<ControlAnswer>(socket, MAX_ANSWER);
  } finally {
    socket.destroy();
  }
}
