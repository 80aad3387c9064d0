/**
 * Child processes for one session: StartProcess, WriteStdin,
 * TerminateProcess, ListProcesses and Cancel (PROTOCOL.md §5.2).
 *
 * - argv exec without a shell unless `UseShell` (spawning.ts); the working
 *   directory resolves through the host's one path resolver (paths.ts),
 *   so `allowedRoots` means the same for processes as for files.
 * - every child leads its own process group (POSIX `detached`), so a tree
 *   can be signalled as a whole; Windows uses `taskkill /T /F`.
 * - output is pulled, never pushed: a pipe is read only while the sink
 *   accepts events, so a child writing faster than the client reads blocks
 *   on its own write and host memory stays bounded.
 * - `Exited` is the last event on a token, exactly once, after both pipes
 *   have ended — or after a short grace once the direct child is gone, so a
 *   grandchild holding the pipes open cannot withhold it. A process killed
 *   by a signal exits with −1 and the signal's name.
 * - TerminateProcess: SIGTERM (to the group with `entireTree`), SIGKILL 5 s
 *   later if it is still there.
 */
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import {
  MAX_OUTPUT_CHUNK,
  ProcessFlags,
  type RequestOf,
  type ResultOf,
  SIGNAL_EXIT_CODE,
  TOKEN_SIZE,
} from '../protocol/index.js';
import { newProc, type Proc, writeAndMaybeEnd } from './child.js';
import type { PathResolver } from './paths.js';
import { buildEnvironment, IS_WINDOWS, launchFor, signal, spawnChild, validateStart } from './spawning.js';
import { type EventSink, type HostContext, HostError } from './types.js';

export interface ProcessManagerOptions {
  /** Between SIGTERM and SIGKILL when terminating (ms). Default 5000 (the contract's 5 s). */
  readonly killGraceMs?: number;
  /**
   * How long the pipes may stay open after the direct child exited (ms) —
   * counting only time the sink was accepting events. Default 300 (the
   * contract allows at most 2 s).
   */
  readonly pipeGraceMs?: number;
  /** Finished processes remembered for ListProcesses. Default 256. */
  readonly historyLimit?: number;
}

/**
 * Bytes of an output event's data that are not output: token, event kind,
 * the byte-array length. The chunk is sized so the event fits the message
 * limit (AES padding is outside it, PROTOCOL.md §4).
 */
const EVENT_OVERHEAD = TOKEN_SIZE + 1 + 4;

/** A process that exists (its pid is real) and has sent nothing yet. */
export interface Started {
  readonly pid: number;
  /** Starts the events (call right after sending the Response). */
  begin(): void;
  /** The Response will never be sent: kill the tree and stay silent. */
  discard(): void;
}

/** Tracks the processes of one session and turns their output into events. */
export class ProcessManager {
  private readonly ctx: HostContext;
  private readonly sink: EventSink;
  private readonly paths: PathResolver;
  private readonly killGraceMs: number;
  private readonly pipeGraceMs: number;
  private readonly historyLimit: number;
  private readonly chunkSize: number;
  private readonly procs = new Map<number, Proc>();
  /** Slots taken by starts that have not produced a process yet. */
  private pending = 0;
  /** Tokens of starts in progress (so a token cannot be started twice at once). */
  private readonly starting = new Set<number>();
  /** Starts in progress, so terminateAll() can wait for them. */
  private readonly inflight = new Set<Promise<unknown>>();
  /** Set while the sink is saturated; resolves when it accepts events again. */
  private gate: Promise<void> | null = null;
  private closing = false;
  private releaseClosing!: () => void;
  private readonly closed = new Promise<void>((resolve) => {
    this.releaseClosing = resolve;
  });

  constructor(ctx: HostContext, sink: EventSink, paths: PathResolver, options: ProcessManagerOptions = {}) {
    this.ctx = ctx;
    this.sink = sink;
    this.paths = paths;
    this.killGraceMs = options.killGraceMs ?? 5000;
    this.pipeGraceMs = options.pipeGraceMs ?? 300;
    this.historyLimit = options.historyLimit ?? 256;
    this.chunkSize = Math.max(1, Math.min(MAX_OUTPUT_CHUNK, ctx.maxMessageSize - EVENT_OVERHEAD));
  }

  /** Processes whose `Exited` event has not been sent yet. */
  get running(): number {
    let n = 0;
    for (const p of this.procs.values()) if (!p.finalized) n++;
    return n;
  }

  // ------------------------------------------------------------ StartProcess

  /**
   * Spawns the process; resolves once it really exists (its pid is real).
   * No event is sent until `begin()` is called — the handler table has it
   * called right after the `{osProcessId}` Response is sent.
   */
  start(token: number, args: RequestOf<'StartProcess'>): Promise<Started> {
    const p = this.startProcess(token, args);
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  private async startProcess(token: number, args: RequestOf<'StartProcess'>): Promise<Started> {
    if (this.closing) throw new HostError('Canceled', 'the session is ending; no new processes');
    const flags = validateStart(args);
    const existing = this.procs.get(token);
    if ((existing && !existing.finalized) || this.starting.has(token))
      throw new HostError('InvalidArgument', `token ${token} is already used by a running process`);
    if (this.running + this.pending >= this.ctx.maxProcesses)
      throw new HostError(
        'LimitExceeded',
        `too many processes: at most ${this.ctx.maxProcesses} may run at once in a session (maxProcesses)`,
      );
    this.pending++;
    this.starting.add(token);
    try {
      const cwd = this.paths.workingDirectory(args.workingDirectory);
      const env = buildEnvironment(args.environment, (flags & ProcessFlags.EmptyEnvironment) !== 0);
      const keepStdin = (flags & ProcessFlags.KeepStdinOpen) !== 0;
      const { file, argv, argv0, verbatim } = await launchFor(
        args,
        cwd,
        env,
        (flags & ProcessFlags.UseShell) !== 0,
      );
      if (this.closing) throw new HostError('Canceled', 'the session is ending; no new processes');
      const child = await spawnChild(file, argv, {
        cwd,
        env,
        argv0,
        detached: !IS_WINDOWS,
        windowsHide: true,
        windowsVerbatimArguments: verbatim,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const proc = this.track(token, args.fileName, child, keepStdin);
      if (this.closing) {
        // terminateAll() began while this one was spawning: it ends with the rest.
        this.begin(proc);
        this.kill(proc, true);
        throw new HostError('Canceled', 'the session is ending; no new processes');
      }
      return { pid: proc.pid, begin: () => this.begin(proc), discard: () => this.discard(proc) };
    } finally {
      this.pending--;
      this.starting.delete(token);
    }
  }

  private track(token: number, fileName: string, child: ChildProcess, keepStdin: boolean): Proc {
    const proc = newProc(token, fileName, child, keepStdin);
    const { stdin, stdout, stderr, hold } = proc;
    // A 'readable' listener keeps the pipes paused but alive: without one,
    // Node drains (discards) unread pipes when the child exits.
    stdout.on('readable', hold);
    stderr.on('readable', hold);
    stdout.on('error', () => {});
    stderr.on('error', () => {});
    stdin.on('error', (err) => {
      proc.stdinError ??= err;
    });
    if (!keepStdin) stdin.end();
    child.on('error', () => {}); // e.g. a failed kill(); handled where it matters
    child.on('exit', (code, signal) => {
      proc.exit = { code: signal ? null : code, signal: signal ?? null };
      if (proc.killTimer && !proc.killTree) {
        clearTimeout(proc.killTimer);
        proc.killTimer = null;
      }
      if (proc.begun) this.startPipeGrace(proc);
      this.maybeFinish(proc);
    });
    this.procs.delete(token); // a finished process under the same token: forget it
    this.procs.set(token, proc);
    this.trimHistory();
    return proc;
  }

  private begin(proc: Proc): void {
    if (proc.begun) return;
    proc.begun = true;
    proc.stdout.off('readable', proc.hold);
    proc.stderr.off('readable', proc.hold);
    this.pump(proc, proc.stdout, 'Stdout');
    this.pump(proc, proc.stderr, 'Stderr');
    if (proc.exit) this.startPipeGrace(proc);
  }

  /** A start whose Response will never go out (canceled meanwhile): end it without a word. */
  private discard(proc: Proc): void {
    proc.silent = true;
    this.begin(proc); // drains the pipes so the pumps can finish
    this.kill(proc, true);
  }

  /**
   * Forwards one pipe as events, reading only while the sink accepts them:
   * `read()` is called only after the previous chunk went out, so while the
   * sink is saturated the pipe's buffer fills and the child blocks.
   */
  private pump(proc: Proc, stream: Readable, name: 'Stdout' | 'Stderr'): void {
    let busy = false;
    let over = false;
    let finished = false;
    const finish = () => {
      if (finished || busy || !over) return;
      finished = true;
      stream.off('readable', drain);
      stream.off('end', onOver);
      stream.off('close', onOver);
      proc.pumpsLeft--;
      this.maybeFinish(proc);
    };
    const onOver = () => {
      over = true;
      finish();
    };
    const forward = async (chunk: Buffer): Promise<void> => {
      for (let off = 0; off < chunk.length; off += this.chunkSize) {
        if (this.gate && !this.closing) await this.waitWritable(proc);
        if (this.closing) return; // session end: nobody is listening any more
        this.send(proc, name, { data: chunk.subarray(off, off + this.chunkSize) });
      }
    };
    const drain = (): void => {
      if (busy || finished) return;
      busy = true;
      void (async () => {
        try {
          for (;;) {
            if (stream.destroyed) break;
            const chunk = stream.read() as Buffer | null;
            if (chunk === null) break; // 'readable' (or 'end') follows
            await forward(chunk);
          }
        } catch {
          // read() on a failed pipe: 'close' follows
        } finally {
          busy = false;
          if (stream.destroyed) over = true;
          finish();
        }
      })();
    };
    stream.on('readable', drain);
    stream.once('end', onOver);
    stream.once('close', onOver);
    if (stream.readableEnded || stream.destroyed) over = true;
    drain();
  }

  private send<N extends 'Stdout' | 'Stderr' | 'Exited'>(
    proc: Proc,
    name: N,
    data: N extends 'Exited' ? { exitCode: number; signal: string | null } : { data: Uint8Array },
  ): void {
    if (proc.silent) return;
    let ok: boolean;
    try {
      ok = this.sink.send(proc.token, name, data as never);
    } catch {
      ok = true; // a broken sink must not take the host down; it reports its own failure
    }
    if (!ok && !this.gate) {
      const reopen = () => {
        this.gate = null;
      };
      this.gate = this.sink.whenWritable().then(reopen, reopen);
    }
  }

  private async waitWritable(proc: Proc): Promise<void> {
    if (proc.blockedPumps++ === 0) proc.blockedSince = Date.now();
    try {
      while (this.gate && !this.closing) await Promise.race([this.gate, this.closed]);
    } finally {
      if (--proc.blockedPumps === 0) proc.blockedTotal += Date.now() - proc.blockedSince;
    }
  }

  private blockedTime(proc: Proc): number {
    return proc.blockedTotal + (proc.blockedPumps > 0 ? Date.now() - proc.blockedSince : 0);
  }

  /**
   * The direct child is gone and we are reading: give the pipes
   * `pipeGraceMs` of reading time (time spent waiting on a saturated sink
   * does not count — that tail is the child's real output) to reach EOF,
   * then cut them so a grandchild holding them cannot withhold `Exited`.
   */
  private startPipeGrace(proc: Proc): void {
    if (proc.finalized || proc.pipeTimer || proc.pumpsLeft === 0) return;
    proc.graceStart = Date.now();
    proc.blockedAtGraceStart = this.blockedTime(proc);
    const check = () => {
      proc.pipeTimer = null;
      if (proc.finalized || proc.pumpsLeft === 0) return;
      const reading = Date.now() - proc.graceStart - (this.blockedTime(proc) - proc.blockedAtGraceStart);
      if (reading >= this.pipeGraceMs || this.closing) {
        proc.stdout.destroy();
        proc.stderr.destroy();
        return;
      }
      proc.pipeTimer = setTimeout(check, this.pipeGraceMs - reading);
    };
    proc.pipeTimer = setTimeout(check, this.pipeGraceMs);
  }

  private maybeFinish(proc: Proc): void {
    if (proc.finalized || !proc.begun || !proc.exit || proc.pumpsLeft > 0) return;
    proc.finalized = true;
    if (proc.pipeTimer) clearTimeout(proc.pipeTimer);
    proc.pipeTimer = null;
    proc.stdinOpen = false;
    proc.stdin.destroy();
    proc.stdout.destroy();
    proc.stderr.destroy();
    this.send(proc, 'Exited', {
      exitCode: proc.exit.signal !== null ? SIGNAL_EXIT_CODE : (proc.exit.code ?? SIGNAL_EXIT_CODE),
      signal: proc.exit.signal,
    });
    proc.resolveDone();
    this.trimHistory();
  }

  private trimHistory(): void {
    let finished = 0;
    for (const p of this.procs.values()) if (p.finalized) finished++;
    for (const [token, p] of this.procs) {
      if (finished <= this.historyLimit) break;
      if (p.finalized) {
        this.procs.delete(token);
        finished--;
      }
    }
  }

  // ------------------------------------------------------------ WriteStdin

  /** Writes to the process's stdin; resolves once the bytes are in the pipe. */
  async writeStdin(args: RequestOf<'WriteStdin'>): Promise<void> {
    const proc = this.lookup(args.processToken);
    if (!(args.data instanceof Uint8Array)) throw new HostError('InvalidArgument', 'data must be bytes');
    if (!proc.stdinOpen) {
      throw new HostError(
        'InvalidArgument',
        !proc.keepStdin
          ? `stdin of process ${args.processToken} was closed at start (start it with the KeepStdinOpen flag)`
          : proc.finalized
            ? `process ${args.processToken} has exited; its stdin is closed`
            : `stdin of process ${args.processToken} was already closed by an earlier WriteStdin`,
      );
    }
    if (args.close) proc.stdinOpen = false; // later writes fail at once, in order
    const op = proc.stdinChain.then(() => writeAndMaybeEnd(proc, args.data, args.close));
    proc.stdinChain = op.catch(() => {});
    return op;
  }

  // ------------------------------------------------------------ TerminateProcess / Cancel

  /**
   * SIGTERM to the process (or its whole group), SIGKILL after the grace.
   * Resolves once signalled; the `Exited` event reports the end.
   */
  async terminate(args: RequestOf<'TerminateProcess'>): Promise<void> {
    const proc = this.lookup(args.processToken);
    this.kill(proc, args.entireTree === true);
  }

  /** Cancel(token): true if `token` is a running process, whose tree is then terminated. */
  cancel(token: number): boolean {
    const proc = this.procs.get(token);
    if (!proc || proc.finalized) return false;
    this.kill(proc, true);
    return true;
  }

  private kill(proc: Proc, tree: boolean): void {
    if (proc.finalized) return; // already exited: nothing to do
    if (proc.exit && !tree) return;
    if (IS_WINDOWS) {
      if (tree) {
        const tk = spawn('taskkill', ['/T', '/F', '/PID', String(proc.pid)], {
          windowsHide: true,
          stdio: 'ignore',
        });
        tk.on('error', () => {});
      } else {
        proc.child.kill();
      }
      return;
    }
    signal(proc.pid, tree, 'SIGTERM');
    if (proc.killTimer && (proc.killTree || !tree)) return; // escalation already scheduled
    if (proc.killTimer) clearTimeout(proc.killTimer);
    proc.killTree = tree;
    proc.killTimer = setTimeout(() => {
      proc.killTimer = null;
      // For a tree, members that ignored SIGTERM may outlive the leader.
      if (tree || !proc.exit) signal(proc.pid, tree, 'SIGKILL');
    }, this.killGraceMs);
  }

  // ------------------------------------------------------------ ListProcesses / session end

  list(): ResultOf<'ListProcesses'> {
    return {
      processes: [...this.procs.values()].map((p) => ({
        token: p.token,
        pid: p.pid,
        fileName: p.fileName,
        running: !p.finalized,
      })),
    };
  }

  /**
   * Session end: terminates every process tree and resolves once each has
   * exited (and its `Exited` was handed to the sink). Output still in the
   * pipes is discarded; later starts are refused.
   */
  async terminateAll(): Promise<void> {
    this.closing = true;
    this.releaseClosing();
    const ended = new Set<Proc>();
    for (;;) {
      await Promise.allSettled([...this.inflight]);
      const live = [...this.procs.values()].filter((p) => !p.finalized);
      if (live.length === 0) break;
      for (const p of live) {
        this.begin(p); // drains the pipes so the pumps can finish
        if (!ended.has(p)) this.kill(p, true);
        ended.add(p);
      }
      await Promise.all(live.map((p) => p.done));
    }
    for (const p of ended) {
      if (p.killTimer) {
        clearTimeout(p.killTimer);
        p.killTimer = null;
        if (!IS_WINDOWS) signal(p.pid, true, 'SIGKILL'); // stragglers that ignored SIGTERM
      }
    }
  }

  private lookup(token: number): Proc {
    const proc = typeof token === 'number' ? this.procs.get(token) : undefined;
    if (!proc) throw new HostError('InvalidArgument', `no process was started with token ${token}`);
    return proc;
  }
}
