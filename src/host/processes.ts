/**
 * Child processes for one session: StartProcess, WriteStdin,
 * TerminateProcess, ListProcesses and Cancel (PROTOCOL.md §5.2).
 *
 * - argv exec without a shell unless `UseShell`; the executable is resolved
 *   here (PATH of the *effective* environment) so errors are precise and
 *   synchronous with the request.
 * - every child leads its own process group (POSIX `detached`), so a tree
 *   can be signalled as a whole; Windows uses `taskkill /T /F`.
 * - output is pulled, never pushed: a pipe is read only while the sink
 *   accepts events, so a child writing faster than the client reads blocks
 *   on its own write and host memory stays bounded.
 * - `Exited` is the last event on a token, exactly once, after both pipes
 *   have ended — or after a short grace once the direct child is gone, so a
 *   grandchild holding the pipes open cannot withhold it.
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  type ErrorKindName,
  MAX_OUTPUT_CHUNK,
  ProcessFlags,
  REPLY_HEADER_SIZE,
  type RequestOf,
  type ResultOf,
} from '../protocol/index.js';
import { type EventSink, type HostContext, HostError } from './types.js';

export interface ProcessManagerOptions {
  /** Between SIGTERM and SIGKILL when terminating (ms). Default 2000. */
  readonly killGraceMs?: number;
  /**
   * How long the pipes may stay open after the direct child exited (ms) —
   * counting only time the sink was accepting events. Default 300.
   */
  readonly pipeGraceMs?: number;
  /** Finished processes remembered for ListProcesses. Default 256. */
  readonly historyLimit?: number;
}

const IS_WINDOWS = process.platform === 'win32';
const KNOWN_FLAGS = ProcessFlags.KeepStdinOpen | ProcessFlags.UseShell | ProcessFlags.EmptyEnvironment;
/** execvp's default search path when the environment has no PATH (glibc). */
const DEFAULT_POSIX_PATH = '/bin:/usr/bin';
/**
 * Room left in a message for everything around an output chunk: reply
 * header, event code, byte-array length, and AES's IV block plus padding.
 */
const EVENT_OVERHEAD = REPLY_HEADER_SIZE + 1 + 4 + 48;

interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
}

interface Proc {
  readonly token: number;
  readonly pid: number;
  readonly fileName: string;
  readonly child: ChildProcess;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  /** Started with KeepStdinOpen. */
  readonly keepStdin: boolean;
  /** Started with KeepStdinOpen and not yet closed by a WriteStdin. */
  stdinOpen: boolean;
  /** Serializes WriteStdin calls so bytes keep their order. */
  stdinChain: Promise<void>;
  stdinError: Error | null;
  begun: boolean;
  exit: ExitInfo | null;
  pumpsLeft: number;
  finalized: boolean;
  readonly done: Promise<void>;
  resolveDone: () => void;
  /** Timers: pipe grace after exit, SIGKILL escalation. */
  pipeTimer: NodeJS.Timeout | null;
  killTimer: NodeJS.Timeout | null;
  killTree: boolean;
  /** For the pipe grace: when the grace started, and time spent waiting on the sink. */
  graceStart: number;
  blockedAtGraceStart: number;
  blockedPumps: number;
  blockedSince: number;
  blockedTotal: number;
  /** Keeps Node from draining unread pipes when the child exits before begin(). */
  readonly hold: () => void;
}

/** Tracks the processes of one session and turns their output into events. */
export class ProcessManager {
  private readonly ctx: HostContext;
  private readonly sink: EventSink;
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

  constructor(ctx: HostContext, sink: EventSink, options: ProcessManagerOptions = {}) {
    this.ctx = ctx;
    this.sink = sink;
    this.killGraceMs = options.killGraceMs ?? 2000;
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
   * No event is sent until `begin()` is called — the dispatcher calls it
   * right after sending the `{pid}` response.
   */
  start(token: number, args: RequestOf<'StartProcess'>): Promise<{ pid: number; begin(): void }> {
    const p = this.startProcess(token, args);
    this.inflight.add(p);
    const forget = () => this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  private async startProcess(
    token: number,
    args: RequestOf<'StartProcess'>,
  ): Promise<{ pid: number; begin(): void }> {
    if (this.closing) throw new HostError('Cancelled', 'the session is ending; no new processes');
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
      const cwd = await this.resolveWorkingDirectory(args.workingDirectory);
      const env = buildEnvironment(args.environment, (flags & ProcessFlags.EmptyEnvironment) !== 0);
      const useShell = (flags & ProcessFlags.UseShell) !== 0;
      const keepStdin = (flags & ProcessFlags.KeepStdinOpen) !== 0;
      let file: string;
      let argv: string[];
      let argv0: string | undefined;
      let verbatim = false;
      if (useShell) {
        if (IS_WINDOWS) {
          file = envGet(env, 'ComSpec') ?? process.env.ComSpec ?? 'cmd.exe';
          argv = ['/d', '/s', '/c', `"${[args.fileName, ...args.arguments.map(cmdQuote)].join(' ')}"`];
          verbatim = true;
        } else {
          file = '/bin/sh';
          argv = ['-c', [args.fileName, ...args.arguments.map(shQuote)].join(' ')];
        }
      } else {
        file = await resolveExecutable(args.fileName, cwd, env);
        argv = args.arguments;
        argv0 = args.fileName;
      }
      if (this.closing) throw new HostError('Cancelled', 'the session is ending; no new processes');
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
        throw new HostError('Cancelled', 'the session is ending; no new processes');
      }
      return { pid: proc.pid, begin: () => this.begin(proc) };
    } finally {
      this.pending--;
      this.starting.delete(token);
    }
  }

  private async resolveWorkingDirectory(wd: string | null): Promise<string> {
    const cwd = wd === null || wd === '' ? this.ctx.baseDirectory : path.resolve(this.ctx.baseDirectory, wd);
    const roots = this.ctx.allowedRoots;
    if (roots && !roots.some((r) => isInside(cwd, path.resolve(r))))
      throw new HostError('AccessDenied', `working directory ${cwd} is outside the allowed roots`);
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(cwd);
    } catch (e) {
      throw fsError(e, `working directory ${cwd}`);
    }
    if (!st.isDirectory()) throw new HostError('NotDirectory', `working directory ${cwd} is not a directory`);
    if (roots) {
      // Symlinks must not lead out of the roots either.
      const real = await realpath(cwd).catch(() => cwd);
      const realRoots = await Promise.all(roots.map((r) => realpath(path.resolve(r)).catch(() => r)));
      if (!realRoots.some((r) => isInside(real, r)))
        throw new HostError('AccessDenied', `working directory ${cwd} is outside the allowed roots`);
    }
    return cwd;
  }

  private track(token: number, fileName: string, child: ChildProcess, keepStdin: boolean): Proc {
    const { stdin, stdout, stderr } = child;
    /* c8 ignore next */
    if (!stdin || !stdout || !stderr || child.pid === undefined)
      throw new HostError('Internal', 'spawned process has no pipes');
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => {
      resolveDone = resolve;
    });
    const hold = () => {};
    const proc: Proc = {
      token,
      pid: child.pid,
      fileName,
      child,
      stdin,
      stdout,
      stderr,
      keepStdin,
      stdinOpen: keepStdin,
      stdinChain: Promise.resolve(),
      stdinError: null,
      begun: false,
      exit: null,
      pumpsLeft: 2,
      finalized: false,
      done,
      resolveDone,
      pipeTimer: null,
      killTimer: null,
      killTree: false,
      graceStart: 0,
      blockedAtGraceStart: 0,
      blockedPumps: 0,
      blockedSince: 0,
      blockedTotal: 0,
      hold,
    };
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
        this.send(proc.token, name, { data: chunk.subarray(off, off + this.chunkSize) });
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
    token: number,
    name: N,
    data: N extends 'Exited' ? { exitCode: number | null; signal: string | null } : { data: Uint8Array },
  ): void {
    let ok: boolean;
    try {
      ok = this.sink.send(token, name, data as never);
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
    this.send(proc.token, 'Exited', { exitCode: proc.exit.code, signal: proc.exit.signal });
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
    const proc = this.lookup(args.process);
    if (!(args.data instanceof Uint8Array)) throw new HostError('InvalidArgument', 'data must be bytes');
    if (!proc.stdinOpen) {
      throw new HostError(
        'InvalidArgument',
        !proc.keepStdin
          ? `stdin of process ${args.process} was closed at start (start it with the KeepStdinOpen flag)`
          : proc.finalized
            ? `process ${args.process} has exited; its stdin is closed`
            : `stdin of process ${args.process} was already closed by an earlier WriteStdin`,
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
    const proc = this.lookup(args.process);
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
    if (!proc) throw new HostError('InvalidHandle', `no process was started with token ${token}`);
    return proc;
  }
}

// ---------------------------------------------------------------- helpers

function signal(pid: number, tree: boolean, sig: NodeJS.Signals): void {
  try {
    process.kill(tree ? -pid : pid, sig);
  } catch {
    // ESRCH: already gone.
  }
}

function writeAndMaybeEnd(proc: Proc, data: Uint8Array, close: boolean): Promise<void> {
  const stdin = proc.stdin;
  const closedError = () =>
    new HostError(
      'IOError',
      proc.stdinError
        ? `stdin of process ${proc.token} failed: ${proc.stdinError.message}`
        : `stdin of process ${proc.token} is closed (the process exited or closed it)`,
    );
  if (stdin.destroyed || stdin.writableEnded || proc.stdinError) return Promise.reject(closedError());
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown) => {
      if (settled) return;
      settled = true;
      stdin.off('close', onClose);
      if (err) reject(closedError());
      else resolve();
    };
    const onClose = () => settle(proc.stdinError ?? new Error('closed'));
    stdin.once('close', onClose);
    const afterWrite = (err?: Error | null) => {
      if (err) return settle(err);
      // Closing needs no flush: the bytes before it are already in the pipe.
      if (close) stdin.end();
      settle(null);
    };
    if (data.length > 0) stdin.write(data, afterWrite);
    else afterWrite(null);
  });
}

/** Spawns and waits for 'spawn' (the pid is real) or 'error'. */
function spawnChild(file: string, argv: string[], options: SpawnOptions): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(file, argv, options);
    } catch (e) {
      reject(new HostError('InvalidArgument', `cannot start ${file}: ${(e as Error).message}`));
      return;
    }
    const onError = (err: NodeJS.ErrnoException) => {
      child.off('spawn', onSpawn);
      child.stdin?.destroy();
      child.stdout?.destroy();
      child.stderr?.destroy();
      reject(fsError(err, err.code === 'ENOENT' ? `cannot execute ${file}: it or its #! interpreter` : file));
    };
    const onSpawn = () => {
      child.off('error', onError);
      resolve(child);
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
}

const ERRNO_KINDS: Record<string, ErrorKindName> = {
  ENOENT: 'NotFound',
  ENOTDIR: 'NotDirectory',
  EACCES: 'AccessDenied',
  EPERM: 'AccessDenied',
  EISDIR: 'IsDirectory',
  ENOEXEC: 'AccessDenied',
  ELOOP: 'InvalidArgument',
  ENAMETOOLONG: 'InvalidArgument',
  E2BIG: 'TooLarge',
  EAGAIN: 'LimitExceeded',
  EMFILE: 'LimitExceeded',
  ENFILE: 'LimitExceeded',
  ENOMEM: 'LimitExceeded',
};

function fsError(e: unknown, what: string): HostError {
  if (e instanceof HostError) return e;
  const err = e as NodeJS.ErrnoException;
  const kind = (err?.code && ERRNO_KINDS[err.code]) || 'IOError';
  const reason =
    kind === 'NotFound'
      ? 'does not exist'
      : kind === 'NotDirectory'
        ? 'has a path component that is not a directory'
        : kind === 'AccessDenied'
          ? 'permission denied'
          : (err?.code ?? err?.message ?? 'failed');
  return new HostError(kind, `${what}: ${reason}`);
}

function hasNul(s: string): boolean {
  return s.includes('\0');
}

/** Shape checks the codec cannot make; returns the flags. */
function validateStart(args: RequestOf<'StartProcess'>): number {
  if (typeof args !== 'object' || args === null) throw new HostError('InvalidArgument', 'missing arguments');
  const { fileName, arguments: argv, workingDirectory, environment, flags } = args;
  if (typeof fileName !== 'string' || fileName === '')
    throw new HostError('InvalidArgument', 'fileName must be a non-empty string');
  if (hasNul(fileName)) throw new HostError('InvalidArgument', 'fileName contains a NUL character');
  if (!Array.isArray(argv) || argv.some((a) => typeof a !== 'string'))
    throw new HostError('InvalidArgument', 'arguments must be strings');
  if (argv.some(hasNul)) throw new HostError('InvalidArgument', 'an argument contains a NUL character');
  if (workingDirectory !== null && typeof workingDirectory !== 'string')
    throw new HostError('InvalidArgument', 'workingDirectory must be a string or null');
  if (workingDirectory && hasNul(workingDirectory))
    throw new HostError('InvalidArgument', 'workingDirectory contains a NUL character');
  if (typeof environment !== 'object' || environment === null)
    throw new HostError('InvalidArgument', 'environment must be a map');
  for (const [k, v] of Object.entries(environment)) {
    if (k === '' || hasNul(k) || (IS_WINDOWS ? k.indexOf('=', 1) > 0 : k.includes('=')))
      throw new HostError('InvalidArgument', `invalid environment variable name ${JSON.stringify(k)}`);
    if (typeof v !== 'string' || hasNul(v))
      throw new HostError('InvalidArgument', `environment variable ${k} has an invalid value`);
  }
  if (!Number.isInteger(flags)) throw new HostError('InvalidArgument', 'flags must be an integer');
  if ((flags & ~KNOWN_FLAGS) !== 0)
    throw new HostError('Unsupported', `unknown StartProcess flags 0x${(flags & ~KNOWN_FLAGS).toString(16)}`);
  return flags;
}

function buildEnvironment(overlay: Record<string, string>, empty: boolean): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  if (!empty) for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(overlay)) {
    if (IS_WINDOWS) {
      // Windows names are case-insensitive: the overlay replaces, never duplicates.
      for (const existing of Object.keys(env))
        if (existing.toUpperCase() === k.toUpperCase()) delete env[existing];
    }
    env[k] = v;
  }
  return env;
}

function envGet(env: Record<string, string>, name: string): string | undefined {
  if (!IS_WINDOWS) return env[name];
  const key = Object.keys(env).find((k) => k.toUpperCase() === name.toUpperCase());
  return key === undefined ? undefined : env[key];
}

function isInside(child: string, root: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (!rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel));
}

type Probe = 'ok' | 'missing' | 'directory' | 'noexec';

async function probe(file: string): Promise<Probe> {
  try {
    const st = await stat(file);
    if (st.isDirectory()) return 'directory';
    if (!st.isFile()) return 'noexec';
    await access(file, fsConstants.X_OK);
    return 'ok';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? 'noexec' : 'missing';
  }
}

/**
 * The absolute path to execute: a name with a directory part resolves
 * against the working directory; a bare name is searched in the PATH of the
 * child's own environment (execvp semantics, done here so errors are exact).
 */
async function resolveExecutable(
  fileName: string,
  cwd: string,
  env: Record<string, string>,
): Promise<string> {
  const hasDir =
    fileName.includes('/') || (IS_WINDOWS && (fileName.includes('\\') || /^[a-z]:/i.test(fileName)));
  const exts = IS_WINDOWS && path.extname(fileName) === '' ? windowsExtensions(env) : [''];
  let candidates: string[];
  if (hasDir) {
    candidates = exts.map((x) => path.resolve(cwd, fileName + x));
  } else {
    const search = envGet(env, 'PATH') ?? (IS_WINDOWS ? '' : DEFAULT_POSIX_PATH);
    const dirs = search.split(path.delimiter);
    if (IS_WINDOWS) dirs.unshift(cwd);
    candidates = dirs.flatMap((d) => exts.map((x) => path.resolve(cwd, d, fileName + x)));
  }
  let denied: Probe | null = null;
  let deniedPath = '';
  for (const c of candidates) {
    const r = await probe(c);
    if (r === 'ok') return c;
    if (r !== 'missing' && (denied === null || (hasDir && r === 'directory'))) {
      denied = r;
      deniedPath = c;
    }
  }
  if (denied === 'directory' && hasDir) throw new HostError('IsDirectory', `${deniedPath} is a directory`);
  if (denied) throw new HostError('AccessDenied', `${deniedPath} is not executable`);
  throw new HostError(
    'NotFound',
    hasDir ? `executable ${candidates[0]} does not exist` : `executable ${fileName} was not found in PATH`,
  );
}

function windowsExtensions(env: Record<string, string>): string[] {
  const pathext = envGet(env, 'PATHEXT') ?? '.COM;.EXE;.BAT;.CMD';
  return ['', ...pathext.split(';').filter((x) => x !== '')];
}

/** One POSIX shell word, taken literally. */
function shQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** One cmd.exe/CRT argument, quoted when needed (best effort: `%` still expands). */
function cmdQuote(s: string): string {
  if (s !== '' && !/[\s"&|<>^()]/.test(s)) return s;
  return `"${s.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}
