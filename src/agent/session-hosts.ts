/**
 * The product side of one session: its host processes (one per product
 * type, started on first use), the routing of replies to the connection that
 * asked, process events to whichever connection is attached, and a bounded
 * buffer for events produced while no connection is attached.
 *
 * Backpressure runs both ways: a full host pipe pauses the requesting
 * connection; a full client socket (or a full detached buffer) pauses
 * reading from the host, which in turn stops the host reading its children.
 */
import {
  AGENT_TYPE_NAMES,
  type AgentType,
  commandName,
  decodeReply,
  ErrorKind,
  EventCode,
  encodeError,
  Kind,
  PRODUCT_COMMANDS,
  type ProtocolError,
  REPLY_HEADER_SIZE,
} from '../protocol/index.js';
import type { HostPool, HostProcess, HostSettings } from './host-process.js';

/** What the router needs of a client connection. */
export interface RouteConnection {
  /** Unique per agent process; used as the host pipe route. Never 0. */
  readonly id: number;
  readonly closed: boolean;
  /** Returns false when the socket's buffer is full. */
  send(message: Buffer): boolean;
  onceDrain(cb: () => void): void;
  /** Stops/starts reading requests from this connection (nested). */
  pauseReading(): void;
  resumeReading(): void;
}

export interface SessionHostsOptions {
  sessionId: number;
  /** Where host processes come from (warm spares). */
  pool: HostPool;
  /** Settings for the host of a product type. */
  settingsFor(agentType: number): HostSettings;
  /** Bytes of process events kept while no connection is attached. */
  detachedBufferBytes?: number;
  /** Called when the session goes from no running process to some, and back. */
  onBusyChange?(busy: boolean): void;
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void;
}

interface Pending {
  conn: RouteConnection;
  command: number;
}

interface ProcessRoute {
  agentType: number;
  conn: RouteConnection | null;
  /** OS pid from the StartProcess Response (its process group on POSIX). */
  pid: number;
}

const START_PROCESS = PRODUCT_COMMANDS.StartProcess.code;
const DEFAULT_DETACHED_BYTES = 8 * 1024 * 1024;

export class SessionHosts {
  private readonly opts: SessionHostsOptions;
  private readonly hosts = new Map<number, HostProcess>();
  /** In-flight requests per product type, keyed by `${route}:${token}`. */
  private readonly pending = new Map<number, Map<string, Pending>>();
  /** Processes of this session by their StartProcess token. */
  private readonly processes = new Map<number, ProcessRoute>();
  private readonly connections = new Set<RouteConnection>();
  private detached: { token: number; message: Buffer }[] = [];
  private detachedBytes = 0;
  private detachedPaused = false;
  private closed = false;
  /** Last time a request arrived or a host produced something (ms). */
  lastActivity = Date.now();

  constructor(opts: SessionHostsOptions) {
    this.opts = opts;
  }

  get runningProcesses(): number {
    return this.processes.size;
  }

  get hostCount(): number {
    return this.hosts.size;
  }

  /** A connection joined the session: it receives events of unattached processes. */
  attach(conn: RouteConnection): void {
    if (this.connections.has(conn)) return;
    this.connections.add(conn);
    for (const p of this.processes.values()) if (!p.conn || p.conn.closed) p.conn = conn;
    this.flushDetached(conn);
  }

  /** A connection left: its processes keep running; their events are buffered. */
  detach(conn: RouteConnection): void {
    this.connections.delete(conn);
    const next = [...this.connections].find((c) => !c.closed) ?? null;
    for (const p of this.processes.values()) if (p.conn === conn) p.conn = next;
  }

  get attachedConnections(): number {
    return this.connections.size;
  }

  /** Routes one product request (agent types 1–3) from `conn`. */
  request(conn: RouteConnection, agentType: number, token: number, command: number, message: Buffer): void {
    if (this.closed) {
      conn.send(encodeError(agentType, token, ErrorKind.Unknown, 'the session is closing'));
      return;
    }
    this.lastActivity = Date.now();
    if (command === START_PROCESS) {
      if (this.processes.has(token)) {
        conn.send(
          encodeError(
            agentType,
            token,
            ErrorKind.InvalidArgument,
            `token ${token} already names a running process in this session; use a token unique within the session`,
          ),
        );
        return;
      }
      this.processes.set(token, { agentType, conn, pid: 0 });
      this.busyChanged();
    }
    const host = this.hostFor(agentType);
    let table = this.pending.get(agentType);
    if (!table) {
      table = new Map();
      this.pending.set(agentType, table);
    }
    const key = `${conn.id}:${token}`;
    if (table.has(key)) {
      if (command === START_PROCESS) {
        this.processes.delete(token);
        this.busyChanged();
      }
      conn.send(
        encodeError(
          agentType,
          token,
          ErrorKind.InvalidArgument,
          `token ${token} is already in flight on this connection`,
        ),
      );
      return;
    }
    table.set(key, { conn, command });
    host.busy(1);
    this.inFlight++;
    this.busyChanged();
    if (!host.send(conn.id, message)) {
      conn.pauseReading();
      host.onceDrain(() => conn.resumeReading());
    }
  }

  private wasBusy = false;
  /** Requests sent to hosts and not yet answered, over all product types. */
  private inFlight = 0;
  private busyChanged(): void {
    const busy = this.processes.size > 0 || this.inFlight > 0;
    if (busy !== this.wasBusy) {
      this.wasBusy = busy;
      this.opts.onBusyChange?.(busy);
    }
  }

  private hostFor(agentType: number): HostProcess {
    const existing = this.hosts.get(agentType);
    if (existing?.alive) return existing;
    const host: HostProcess = this.opts.pool.take(this.opts.settingsFor(agentType), {
      onMessage: (route, message) => this.fromHost(host, agentType, route, message),
      onExit: (reason) => this.hostExited(host, agentType, reason),
      onLog: (line) =>
        this.opts.log('warn', 'host output', { sessionId: this.opts.sessionId, agentType, line }),
    });
    this.hosts.set(agentType, host);
    this.opts.log('info', 'host started', { sessionId: this.opts.sessionId, agentType, pid: host.pid });
    return host;
  }

  private fromHost(host: HostProcess, agentType: number, route: number, message: Buffer): void {
    this.lastActivity = Date.now();
    if (message.length < REPLY_HEADER_SIZE) return;
    const token = message.readInt32LE(1);
    const kind = message[5];
    if (kind === Kind.Event) {
      // Event: to the process's connection, or buffered while detached.
      const proc = this.processes.get(token);
      if (!proc) return;
      let exited = false;
      try {
        const r = decodeReply(message);
        exited = r.kind === 'event' && r.event === EventCode.Exited;
      } catch (err) {
        this.opts.log('warn', 'bad event from host', { error: (err as ProtocolError).message });
      }
      if (exited) {
        this.processes.delete(token);
        this.busyChanged();
      }
      this.deliver(host, proc.conn, token, message);
      return;
    }
    const table = this.pending.get(agentType);
    const key = `${route}:${token}`;
    const p = table?.get(key);
    if (!p) return;
    table!.delete(key);
    host.busy(-1);
    this.inFlight--;
    if (p.command === START_PROCESS && kind === Kind.Error) {
      this.processes.delete(token);
      this.busyChanged();
    } else if (p.command === START_PROCESS && kind === Kind.Response) {
      const proc = this.processes.get(token);
      if (proc && message.length >= REPLY_HEADER_SIZE + 4) proc.pid = message.readInt32LE(REPLY_HEADER_SIZE);
    }
    this.busyChanged();
    if (!p.conn.closed) this.sendTo(host, p.conn, message);
  }

  private deliver(host: HostProcess, conn: RouteConnection | null, token: number, message: Buffer): void {
    if (conn && !conn.closed) {
      this.sendTo(host, conn, message);
      return;
    }
    this.detached.push({ token, message: Buffer.from(message) });
    this.detachedBytes += message.length;
    const limit = this.opts.detachedBufferBytes ?? DEFAULT_DETACHED_BYTES;
    if (this.detachedBytes >= limit && !this.detachedPaused) {
      // Never drop output: stop reading the hosts until a connection attaches.
      this.detachedPaused = true;
      for (const h of this.hosts.values()) h.pause();
    }
  }

  private sendTo(host: HostProcess, conn: RouteConnection, message: Buffer): void {
    if (!conn.send(message)) {
      host.pause();
      conn.onceDrain(() => host.resume());
    }
  }

  private flushDetached(conn: RouteConnection): void {
    const queue = this.detached;
    this.detached = [];
    this.detachedBytes = 0;
    let full = false;
    for (const { message } of queue) if (!conn.send(message)) full = true;
    if (this.detachedPaused) {
      this.detachedPaused = false;
      const resumeAll = () => {
        for (const h of this.hosts.values()) h.resume();
      };
      if (full) conn.onceDrain(resumeAll);
      else resumeAll();
    }
  }

  private hostExited(host: HostProcess, agentType: number, reason: string): void {
    if (this.hosts.get(agentType) === host) this.hosts.delete(agentType);
    if (this.closed) return;
    this.opts.log('error', 'host process ended', { sessionId: this.opts.sessionId, agentType, reason });
    const message = `the ${AGENT_TYPE_NAMES[agentType as AgentType] ?? agentType} host process ended (${reason}); the request was not completed — retry starts a fresh host`;
    const table = this.pending.get(agentType);
    const failedTokens = new Set<number>();
    if (table) {
      for (const [key, p] of table) {
        const token = Number(key.slice(key.indexOf(':') + 1));
        if (p.command === START_PROCESS) failedTokens.add(token);
        if (!p.conn.closed) p.conn.send(encodeError(agentType, token, ErrorKind.HostCrashed, message));
      }
      this.inFlight -= table.size;
      table.clear();
    }
    for (const [token, proc] of this.processes) {
      if (proc.agentType !== agentType) continue;
      this.processes.delete(token);
      // The host can no longer end this tree; the agent does.
      killTree(proc.pid);
      if (failedTokens.has(token)) continue;
      const err = encodeError(agentType, token, ErrorKind.HostCrashed, message);
      if (proc.conn && !proc.conn.closed) proc.conn.send(err);
      else this.detached.push({ token, message: err });
    }
    this.busyChanged();
  }

  /** Ends the session's product side: every host asked to clean up and exit. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const hosts = [...this.hosts.values()];
    this.hosts.clear();
    this.processes.clear();
    this.busyChanged();
    this.detached = [];
    await Promise.all(hosts.map((h) => h.shutdown()));
  }
}

/** Kills a process group the agent learned of (POSIX); best effort. */
function killTree(pid: number): void {
  if (pid <= 0) return;
  try {
    if (process.platform === 'win32') process.kill(pid, 'SIGKILL');
    else process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function describeCommand(agentType: number, command: number): string {
  return commandName(agentType, command) ?? `command ${command}`;
}
