/**
 * One product host child process, seen from the agent: spawns it, carries
 * wire messages to and from it over its private pipe (fd 3) with the one
 * pipe-end class (`PipeConnection`), probes its liveness with Ping control
 * messages, and reports its death. The host runs with the agent's user and
 * environment; a crash or leak in it never takes the agent down.
 *
 * Control (src/protocol/pipe.ts): the agent's first message is Init with the
 * host's `HostSettings` (a spare waits for it until it is assigned); the
 * host sends a Ping when it is up and echoes the agent's Pings, and Handles
 * when its open file handles go from none to some and back; Shutdown asks
 * it to end its processes and exit. Spares and the bound on hosts:
 * host-pool.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  HOST_BOOT_FRAME_LIMIT,
  HostControl,
  type HostSettings,
  isHostTempName,
  type Pieces,
} from '../protocol/index.js';
import { PipeConnection } from '../transport/index.js';

/** Where a host's output goes; replaced when a spare is assigned to a session. */
export interface HostHandlers {
  /**
   * Replies and events from the host (wire messages, by route). A large one
   * comes as `pieces` (not copied together; `message` is the first piece,
   * holding its reply header): forward them as they are.
   */
  onMessage(route: number, message: Buffer, pieces: Pieces | undefined): void;
  /** Called once when the host is gone, whatever the reason. */
  onExit(reason: string): void;
  /** Lines the host wrote to stdout/stderr. */
  onLog?(line: string): void;
  /** The host's open file handles went from none to some, or back (HostControl.Handles). */
  onHandles?(holds: boolean): void;
}

export interface HostProcessOptions extends Partial<HostHandlers> {
  /** Settings to send at once; without them the host waits as a spare until `assign()`. */
  settings?: HostSettings;
  /** Liveness probe interval while requests are outstanding (ms). */
  heartbeatMs?: number;
  /** A host that does not answer a probe within this is killed (ms). */
  heartbeatTimeoutMs?: number;
  /** A host that has not said it is up within this is killed (ms). */
  startupTimeoutMs?: number;
  /** Largest pipe frame accepted from the host (default: the boot limit). */
  frameLimit?: number;
}

/** Temp files tracked per host (beyond it, a host's writes are not tracked; a host has one per write under way). */
const MAX_TRACKED_TEMPS = 4096;
/** Longest temp path tracked (Linux's PATH_MAX is 4096 bytes). */
const MAX_TEMP_PATH = 16 * 1024;

function hostEntry(): { script: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.ts')) {
    return {
      script: fileURLToPath(new URL('../host/main.ts', import.meta.url)),
      // Load tsx by absolute URL so the host starts whatever the working directory is.
      execArgv: ['--import', import.meta.resolve('tsx')],
    };
  }
  return { script: fileURLToPath(new URL('../host/main.js', import.meta.url)), execArgv: [] };
}

export class HostProcess {
  private readonly child: ChildProcess;
  private readonly pipe: PipeConnection;
  private handlers: HostHandlers;
  private assigned = false;
  private exited = false;
  private exitReason = '';
  private heartbeat: NodeJS.Timeout | null = null;
  private probeSentAt = 0;
  private probeToken = 0;
  /** The host has said it is up (its first frame). */
  private ready = false;
  private readonly startedAt = Date.now();
  /** Requests sent and not yet answered (maintained by the caller via busy()). */
  private outstanding = 0;
  /** The host said it has file handles open (HostControl.Handles). */
  private handles = false;
  /** Temp files of the host's atomic writes under way (HostControl.Temp): removed when it ends. */
  private readonly temps = new Set<string>();
  /** Sessions this process has served before the current one (recycle()). */
  private recycles = 0;

  constructor(opts: HostProcessOptions) {
    this.handlers = {
      onMessage: opts.onMessage ?? (() => {}),
      onExit: opts.onExit ?? (() => {}),
      ...(opts.onLog ? { onLog: opts.onLog } : {}),
    };
    const { script, execArgv } = hostEntry();
    this.child = spawn(process.execPath, [...execArgv, script], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const socket = this.child.stdio[3] as Socket;
    this.pipe = new PipeConnection(socket, opts.frameLimit ?? HOST_BOOT_FRAME_LIMIT, true);
    for (const s of [this.child.stdout, this.child.stderr]) {
      s?.setEncoding('utf8');
      let partial = '';
      s?.on('data', (d: string) => {
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > 8192) partial = partial.slice(0, 8192);
        for (const l of lines) if (l) this.handlers.onLog?.(l);
      });
    }
    this.pipe.on('message', (route, message, pieces) => {
      if (this.exited) return; // read while draining the pipe of a dead host: nobody waits for it now
      this.ready = true;
      this.handlers.onMessage(route, message, pieces);
    });
    this.pipe.on('control', (message) => {
      if (message.control === HostControl.Temp) {
        this.trackTemp(message.exists, message.path);
        return;
      }
      if (this.exited) return;
      // The host's "I am up", or the echo of a probe: either way it is alive.
      if (message.control === HostControl.Ping) {
        this.ready = true;
        this.probeSentAt = 0;
      } else if (message.control === HostControl.Handles) {
        this.handles = message.open > 0;
        this.handlers.onHandles?.(this.handles);
      }
    });
    this.pipe.on('corrupt', (err) => this.kill(`corrupt pipe: ${err.message}`));
    // A broken pipe usually means the host just died: let 'exit' tell why,
    // and kill it only if it lingers.
    socket.on('error', () => {
      setTimeout(() => this.kill('its pipe broke'), 1000).unref();
    });
    this.child.on('error', (err) => this.finish(`could not start: ${err.message}`));
    this.child.on('exit', (code, signal) =>
      this.finish(this.exitReason || (signal ? `killed by ${signal}` : `exited with code ${code}`)),
    );
    const every = opts.heartbeatMs ?? 5000;
    const timeout = opts.heartbeatTimeoutMs ?? 30000;
    const startup = opts.startupTimeoutMs ?? 60000;
    this.heartbeat = setInterval(() => this.probe(timeout, startup), every);
    this.heartbeat.unref();
    if (opts.settings) this.assign(opts.settings);
  }

  /** True once the host has its settings (it belongs to a session). */
  get isAssigned(): boolean {
    return this.assigned;
  }

  /**
   * Gives the host its settings (Init, its first message) and, for a spare,
   * the handlers of the session that takes it.
   */
  assign(settings: HostSettings, handlers?: HostHandlers): void {
    if (this.assigned) throw new Error('host already assigned');
    this.assigned = true;
    if (handlers) this.handlers = handlers;
    if (this.exited) {
      queueMicrotask(() => this.handlers.onExit(this.exitReason || 'exited before it was used'));
      return;
    }
    this.pipe.sendControl({ control: HostControl.Init, settings });
  }

  /** How many times recycle() has handed this process on. */
  get recycled(): number {
    return this.recycles;
  }

  /**
   * The session this host served has ended and it held nothing: it drops
   * that session's state (HostControl.Recycle) and becomes unassigned again,
   * with `handlers` (a spare's) in place of the session's, ready for the
   * next assign(). False when it cannot be (it has exited, or never came up).
   */
  recycle(handlers: HostHandlers): boolean {
    if (this.exited || !this.ready || !this.assigned) return false;
    this.pipe.sendControl({ control: HostControl.Recycle });
    this.assigned = false;
    this.handlers = handlers;
    this.outstanding = 0;
    this.recycles++;
    return true;
  }

  /** Reload: new settings for the requests sent after this (HostControl.Settings). */
  updateSettings(settings: HostSettings): void {
    if (!this.assigned || this.exited) return;
    this.pipe.sendControl({ control: HostControl.Settings, settings });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True once the host has said it is up. */
  get isReady(): boolean {
    return this.ready;
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Tells the host supervisor how many requests are outstanding (probes run only then). */
  busy(delta: number): void {
    this.outstanding = Math.max(0, this.outstanding + delta);
  }

  /** Requests sent to it and not answered (as told by busy()). */
  get pendingRequests(): number {
    return this.outstanding;
  }

  /** True while the host has file handles open. */
  get holdsHandles(): boolean {
    return this.handles;
  }

  /** Sends one wire message for `route` as it is. Returns false when the pipe is full. */
  send(route: number, message: Buffer | Pieces): boolean {
    if (this.exited) return true;
    return this.pipe.send(route, message);
  }

  /** Resolves when the pipe can take more — or when the host is gone, since then nothing will drain. */
  whenWritable(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return this.pipe.whenWritable();
  }

  /** Stops reading host output (nested; every pause needs one resume). */
  pause(): void {
    this.pipe.pause();
  }

  resume(): void {
    this.pipe.resume();
  }

  private probe(timeout: number, startup: number): void {
    if (this.exited) return;
    if (!this.ready) {
      // Starting (slow on a loaded machine): judge it by the startup limit only.
      if (Date.now() - this.startedAt > startup) this.kill(`did not start within ${startup} ms`);
      return;
    }
    if (this.probeSentAt !== 0) {
      if (Date.now() - this.probeSentAt > timeout) this.kill(`stopped answering for ${timeout} ms`);
      return;
    }
    if (this.outstanding === 0) return;
    this.probeSentAt = Date.now();
    this.probeToken = (this.probeToken + 1) | 0;
    this.pipe.sendControl({ control: HostControl.Ping, token: this.probeToken });
  }

  /** Kills the host at once; onExit follows with `reason`. */
  kill(reason: string): void {
    if (this.exited) return;
    this.exitReason ||= reason;
    this.child.kill('SIGKILL');
  }

  /** Asks the host to end its processes and exit; kills it after `graceMs`. */
  async shutdown(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.exitReason ||= 'shut down';
    this.pipe.sendControl({ control: HostControl.Shutdown });
    const timer = setTimeout(() => this.kill('did not shut down in time'), graceMs);
    await done;
    clearTimeout(timer);
  }

  /** Temp files the host has said exist now (tests). */
  get tempFiles(): readonly string[] {
    return [...this.temps];
  }

  private trackTemp(exists: boolean, p: string): void {
    if (!exists) {
      this.temps.delete(p);
      return;
    }
    // Only what has the form of a host's temp file, and a bounded number of them.
    if (this.temps.size >= MAX_TRACKED_TEMPS || p.length > MAX_TEMP_PATH) return;
    if (!path.isAbsolute(p) || !isHostTempName(path.basename(p))) return;
    this.temps.add(p);
  }

  /**
   * Removes the temp files of writes the host never finished (kill -9 mid
   * write). Synchronous, before onExit: a client told HostCrashed finds
   * them gone, and a fresh host of the session cannot meet them.
   */
  private removeTemps(): void {
    for (const p of this.temps) {
      try {
        rmSync(p, { recursive: true, force: true });
      } catch (err) {
        this.handlers.onLog?.(
          `could not remove the temp file ${p} of a write the host never finished: ${String(err)}`,
        );
      }
    }
    this.temps.clear();
  }

  private finish(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.removeTemps();
    // Whoever waits for the pipe to drain would wait forever (issue 18, item 1).
    this.pipe.releaseWaiters();
    this.handlers.onExit(reason);
    this.drainPipe();
  }

  /**
   * 'exit' can come before the last frames the host wrote have been read: a
   * Temp it sent just before a kill -9 may still be in the pipe. Read on to
   * the pipe's end (replies are dropped now), a second at most — a process
   * the host started may hold the pipe open — then remove what came late.
   */
  private drainPipe(): void {
    const socket = this.pipe.socket;
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.removeTemps();
      socket.destroy();
    };
    const timer = setTimeout(end, 1000);
    timer.unref();
    if (socket.destroyed || socket.readableEnded) {
      end();
      return;
    }
    socket.once('end', end);
    socket.once('close', end);
    socket.once('error', end);
    socket.resume();
  }
}
