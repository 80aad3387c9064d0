/**
 * One product host child process, seen from the agent: spawns it, frames
 * requests onto its private pipe (fd 3), hands replies back by route, probes
 * its liveness, and reports its death. The host runs with the agent's user
 * and environment; a crash or leak in it never takes the agent down.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  encodeControl,
  encodeHostFrame,
  FrameDecoder,
  HOST_CONTROL,
  HostControl,
  hostFrameLimit,
  NO_ROUTE,
  splitHostFrame,
} from '../protocol/index.js';

/** Settings the host reads from its environment (mirrors src/host/types.ts HostContext). */
export interface HostSettings {
  rootPath: string;
  baseDirectory: string;
  allowedRoots: string[] | null;
  maxMessageSize: number;
  maxOpenFiles: number;
  maxProcesses: number;
}

export interface HostProcessOptions {
  settings: HostSettings;
  /** Replies and events from the host. */
  onMessage(route: number, message: Buffer): void;
  /** Called once when the host is gone, whatever the reason. */
  onExit(reason: string): void;
  /** Lines the host wrote to stdout/stderr. */
  onLog?(line: string): void;
  /** Liveness probe interval while requests are outstanding (ms). */
  heartbeatMs?: number;
  /** A host that does not answer a probe within this is killed (ms). */
  heartbeatTimeoutMs?: number;
  /** A host that has not said it is up within this is killed (ms). */
  startupTimeoutMs?: number;
}

const HOST_ENV = 'OUTPOST_HOST_CONFIG';

function hostEntry(): { script: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.ts')) {
    return {
      script: fileURLToPath(new URL('../host/main.ts', import.meta.url)),
      execArgv: ['--import', 'tsx'],
    };
  }
  return { script: fileURLToPath(new URL('../host/main.js', import.meta.url)), execArgv: [] };
}

export class HostProcess {
  private readonly child: ChildProcess;
  private readonly pipe: Socket;
  private readonly decoder: FrameDecoder;
  private readonly opts: HostProcessOptions;
  private exited = false;
  private exitReason = '';
  private heartbeat: NodeJS.Timeout | null = null;
  private probeSentAt = 0;
  private probeToken = 0;
  private pauses = 0;
  /** The host has said it is up (its first frame). */
  private ready = false;
  private readonly startedAt = Date.now();
  /** Requests sent and not yet answered (maintained by the caller via busy()). */
  private outstanding = 0;

  constructor(opts: HostProcessOptions) {
    this.opts = opts;
    this.decoder = new FrameDecoder(hostFrameLimit(opts.settings.maxMessageSize));
    const { script, execArgv } = hostEntry();
    this.child = spawn(process.execPath, [...execArgv, script], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, [HOST_ENV]: JSON.stringify(opts.settings) },
      windowsHide: true,
    });
    this.pipe = this.child.stdio[3] as Socket;
    for (const s of [this.child.stdout, this.child.stderr]) {
      s?.setEncoding('utf8');
      let partial = '';
      s?.on('data', (d: string) => {
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > 8192) partial = partial.slice(0, 8192);
        for (const l of lines) if (l) opts.onLog?.(l);
      });
    }
    this.pipe.on('data', (chunk: Buffer) => this.onData(chunk));
    this.pipe.on('error', () => this.kill('pipe error'));
    this.child.on('error', (err) => this.finish(`could not start: ${err.message}`));
    this.child.on('exit', (code, signal) =>
      this.finish(this.exitReason || (signal ? `killed by ${signal}` : `exited with code ${code}`)),
    );
    const every = opts.heartbeatMs ?? 5000;
    const timeout = opts.heartbeatTimeoutMs ?? 30000;
    const startup = opts.startupTimeoutMs ?? 60000;
    this.heartbeat = setInterval(() => this.probe(timeout, startup), every);
    this.heartbeat.unref();
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

  /** Sends one wire message for `route`. Returns false when the pipe is full. */
  send(route: number, message: Uint8Array): boolean {
    if (this.exited) return true;
    return this.pipe.write(encodeHostFrame(route, message));
  }

  onceDrain(cb: () => void): void {
    if (this.exited || !this.pipe.writableNeedDrain) cb();
    else this.pipe.once('drain', cb);
  }

  /** Stops reading host output (nested; every pause needs one resume). */
  pause(): void {
    if (this.pauses++ === 0) this.pipe.pause();
  }

  resume(): void {
    if (this.pauses > 0 && --this.pauses === 0) this.pipe.resume();
  }

  private onData(chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.kill(`corrupt pipe: ${String(err)}`);
      return;
    }
    this.ready = true;
    for (const f of frames) {
      const { route, message } = splitHostFrame(f);
      if (route === NO_ROUTE && message[0] === HOST_CONTROL) {
        this.probeSentAt = 0;
        continue;
      }
      this.opts.onMessage(route, message);
    }
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
    this.pipe.write(encodeHostFrame(NO_ROUTE, encodeControl(HostControl.Ping, ++this.probeToken)));
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
    this.pipe.write(encodeHostFrame(NO_ROUTE, encodeControl(HostControl.Shutdown, 0)));
    const timer = setTimeout(() => this.kill('did not shut down in time'), graceMs);
    await done;
    clearTimeout(timer);
  }

  private finish(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.pipe.destroy();
    this.opts.onExit(reason);
  }
}
