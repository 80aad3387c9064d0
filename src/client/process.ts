/**
 * Remote processes: StartProcess and its events as Node streams.
 *
 * Output backpressure: stdout and stderr are `Readable`s with a bounded
 * `highWaterMark`. When one is full (its consumer is behind), the client
 * stops reading the connection (`FramedConnection.pause()`), so TCP pushes
 * back on the agent, the agent's host stops reading the child's pipes and
 * the child blocks on its own write. Reading resumes when the consumer
 * drains. Nothing is buffered without bound — but it also means that while
 * one process's output is unread, no other reply arrives on that client:
 * consume (or `resume()`) both streams of every process you spawn.
 */
import { Readable, Writable } from 'node:stream';
import { decodeEventBody, EventCode, type EventOf, ProcessFlags } from '../protocol/index.js';
import type { ProcessSink } from './channel.js';
import { type ClientContext, noop } from './context.js';
import { ConnectionError } from './errors.js';

/** How a remote process ended. */
export interface ProcessExit {
  /** Exit code, or null when it was ended by a signal (the wire's exit code −1 is not passed on). */
  code: number | null;
  /** The signal that ended it (e.g. `'SIGKILL'`), or null. */
  signal: string | null;
}

/** Options of {@link AgentClient.spawn}. */
export interface SpawnOptions {
  /** Working directory (default: the agent's root path for this product). */
  cwd?: string;
  /** Variables to set (over the agent's environment, or alone with `clearEnv`); `undefined` values are skipped. */
  env?: Record<string, string | undefined>;
  /** Start from an empty environment (only `env`). */
  clearEnv?: boolean;
  /**
   * Run through the shell (`/bin/sh -c`; `cmd.exe /d /s /c` on Windows):
   * `file` is the command line and the SDK quotes `args` onto it (the wire
   * would pass them as positional parameters, `$1`…, which cmd.exe lacks).
   */
  shell?: boolean;
  /** Keep stdin open and expose it as `stdin` (default false: stdin is closed at once and `stdin` is null). */
  stdin?: boolean;
  /** Bytes each output stream buffers before the connection is paused (default 1 MiB). */
  highWaterMark?: number;
  /** Kills the process tree when it fires. */
  signal?: AbortSignal;
}

/** Default highWaterMark of a process's stdout/stderr. */
const OUTPUT_HIGH_WATER_MARK = 1024 * 1024;
const STDIN_HIGH_WATER_MARK = 64 * 1024;

/**
 * A process started on the agent. Its output arrives as `stdout`/`stderr`
 * (Node `Readable`s, also async-iterable); `exited` resolves when it ends.
 * If the connection drops and the client reconnects to the same session, the
 * output the agent buffered meanwhile continues on the new connection.
 */
export class RemoteProcess implements ProcessSink {
  /** The StartProcess token that names the process in the session. */
  readonly token: number;
  /** The process's standard output. */
  readonly stdout: Readable;
  /** The process's standard error. */
  readonly stderr: Readable;
  /** Its standard input when spawned with `stdin: true` (end it to close the pipe), else null. */
  readonly stdin: Writable | null;
  /**
   * Resolves with the exit code or signal. Rejects with a `ConnectionError`
   * when the client stops following the process (closed, session lost) or a
   * `RemoteError` (`HostCrashed`).
   */
  readonly exited: Promise<ProcessExit>;
  private osPid = 0;
  private exit: ProcessExit | null = null;
  private settle!: { resolve: (e: ProcessExit) => void; reject: (err: Error) => void };
  private readonly ctx: ClientContext;

  /** @internal Use {@link AgentClient.spawn}. */
  constructor(
    ctx: ClientContext,
    token: number,
    options: { stdin: boolean; highWaterMark?: number | undefined },
  ) {
    this.ctx = ctx;
    this.token = token;
    const hwm = options.highWaterMark ?? OUTPUT_HIGH_WATER_MARK;
    if (!Number.isInteger(hwm) || hwm < 1)
      throw new RangeError(`highWaterMark must be a positive integer, got ${hwm}`);
    this.stdout = this.output(hwm);
    this.stderr = this.output(hwm);
    this.stdin = options.stdin ? this.input() : null;
    this.exited = new Promise<ProcessExit>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Not awaiting `exited` must not crash the program; awaiting it still sees the rejection.
    this.exited.catch(noop);
  }

  /** The OS process ID on the agent's machine. */
  get pid(): number {
    return this.osPid;
  }

  /** The exit once known, else null. */
  get exitStatus(): ProcessExit | null {
    return this.exit;
  }

  /** @internal */
  started(pid: number): void {
    this.osPid = pid;
  }

  /**
   * Terminates the process (SIGTERM, SIGKILL after the agent's grace) —
   * with its whole tree unless `tree: false`. `exited` reports the end.
   */
  async kill(options: { tree?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    if (this.exit) return;
    await this.ctx.call(
      'TerminateProcess',
      { processToken: this.token, entireTree: options.tree ?? true },
      { signal: options.signal },
    );
  }

  /** @internal ProcessSink */
  onEvent(event: number, body: Buffer): void {
    if (event === EventCode.Exited) {
      const e = decodeEventBody('Exited', body);
      this.finish(e.signal !== null ? { code: null, signal: e.signal } : { code: e.exitCode, signal: null });
      return;
    }
    const stream = event === EventCode.Stdout ? this.stdout : event === EventCode.Stderr ? this.stderr : null;
    if (!stream || stream.destroyed || stream.readableEnded) return; // nobody reads it any more
    const data = (decodeEventBody('Stdout', body) as EventOf<'Stdout'>).data;
    if (!stream.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)))
      this.ctx.channel.block(stream);
  }

  /** @internal ProcessSink */
  onFailure(err: Error): void {
    this.ctx.channel.unregisterProcess(this.token);
    for (const s of [this.stdout, this.stderr, this.stdin]) {
      if (!s || s.destroyed) continue;
      // Only report to streams someone listens to; an unheard 'error' would crash the program.
      if (s.listenerCount('error') > 0) s.destroy(err);
      else s.destroy();
    }
    this.release();
    this.settle.reject(err);
  }

  private finish(exit: ProcessExit): void {
    this.exit = exit;
    this.ctx.channel.unregisterProcess(this.token);
    for (const s of [this.stdout, this.stderr]) if (!s.destroyed) s.push(null);
    this.release();
    this.settle.resolve(exit);
  }

  private release(): void {
    this.ctx.channel.unblock(this.stdout);
    this.ctx.channel.unblock(this.stderr);
  }

  private output(highWaterMark: number): Readable {
    const stream: Readable = new Readable({
      highWaterMark,
      read: () => this.ctx.channel.unblock(stream),
    });
    stream.once('close', () => this.ctx.channel.unblock(stream));
    return stream;
  }

  private input(): Writable {
    return new Writable({
      highWaterMark: STDIN_HIGH_WATER_MARK,
      write: (chunk: Buffer, _enc, callback) =>
        this.writeStdin(chunk, false).then(() => callback(), callback),
      final: (callback) => this.writeStdin(Buffer.alloc(0), true).then(() => callback(), callback),
    });
  }

  private async writeStdin(data: Buffer, close: boolean): Promise<void> {
    if (this.exit && data.length > 0)
      throw new ConnectionError('CLOSED', `the process ${this.osPid} has exited; its stdin is closed`);
    if (this.exit) return;
    const max = this.ctx.maxChunk;
    for (let off = 0; off < data.length; off += max) {
      const piece = data.subarray(off, off + max);
      const last = off + max >= data.length;
      await this.ctx.call('WriteStdin', { processToken: this.token, data: piece, close: close && last });
    }
    if (data.length === 0) await this.ctx.call('WriteStdin', { processToken: this.token, data, close });
  }
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

/** Validates spawn options and builds the StartProcess arguments (`windows`: the agent's shell is cmd.exe). */
export function startArguments(
  file: string,
  args: readonly string[],
  options: SpawnOptions,
  windows = false,
): {
  fileName: string;
  args: string[];
  workingDirectory: string | null;
  environment: Record<string, string>;
  flags: number;
} {
  if (typeof file !== 'string' || file === '') throw new TypeError('file must be a non-empty string');
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string'))
    throw new TypeError('args must be an array of strings');
  if (options.cwd !== undefined && (typeof options.cwd !== 'string' || options.cwd === ''))
    throw new TypeError('cwd must be a non-empty string');
  const environment: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.env ?? {})) {
    if (v === undefined) continue;
    if (typeof v !== 'string') throw new TypeError(`env.${k} must be a string, got ${typeof v}`);
    if (k === '' || k.includes('=') || k.includes('\0'))
      throw new TypeError(`env name ${JSON.stringify(k)} must be non-empty and contain no "=" or NUL`);
    environment[k] = v;
  }
  let flags = 0;
  if (options.stdin) flags |= ProcessFlags.KeepStdinOpen;
  if (options.shell) flags |= ProcessFlags.UseShell;
  if (options.clearEnv) flags |= ProcessFlags.EmptyEnvironment;
  // With the shell, the arguments become words of the command line.
  const quote = windows ? cmdQuote : shQuote;
  const shellLine = options.shell && args.length > 0;
  return {
    fileName: shellLine ? [file, ...args.map(quote)].join(' ') : file,
    args: shellLine ? [] : [...args],
    workingDirectory: options.cwd ?? null,
    environment,
    flags,
  };
}
