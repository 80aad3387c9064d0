/**
 * agent.runJob(): ExecuteJob (60) with its Log events (4) as an async
 * iterator, JobData events (5, an Outpost extension) to a callback, and the
 * result bytes as a promise (docs/SDK.md, "Jobs").
 *
 * The job's token is registered with the channel like a process's, so its
 * events reach it however they arrive; and when the connection drops and
 * the client resumes the same session, the agent delivers the buffered
 * events and then the Response (or Error) on the new connection — the
 * result promise settles from there (ProcessSink.onResult). A lost session
 * rejects it (SessionLostError).
 */
import { decodeEventBody, decodeResult, EventCode, LogLevel } from '../protocol/index.js';
import type { ProcessSink } from './channel.js';
import type { ClientContext } from './context.js';
import { ConnectionError, SessionLostError } from './errors.js';

export type JobLogLevel = 'debug' | 'info' | 'warning' | 'error';
const LEVEL_NAMES: Record<number, JobLogLevel> = {
  [LogLevel.Debug]: 'debug',
  [LogLevel.Info]: 'info',
  [LogLevel.Warning]: 'warning',
  [LogLevel.Error]: 'error',
};

/** One Log event of a job. */
export interface JobLogLine {
  readonly level: JobLogLevel;
  readonly text: string;
}

/** Options of {@link AgentClient.runJob}. */
export interface RunJobOptions {
  /** Cancels the job (Cancel, 99): `result` then rejects with RemoteError `Canceled` once the agent has stopped it. */
  signal?: AbortSignal;
  /** Called for every log line as it arrives (besides `logs`). */
  onLog?: (line: JobLogLine) => void;
  /** Called for every JobData chunk the job streams (outpost.manifest's NDJSON). */
  onData?: (chunk: Buffer) => void;
}

/** A running job. */
export interface JobRun {
  /** Its log lines, in order, until the job ends. */
  readonly logs: AsyncIterable<JobLogLine>;
  /** Its result bytes; rejects with RemoteError (`Unsupported`, `Canceled`, `Internal`, `HostCrashed`, …). */
  readonly result: Promise<Buffer>;
  /** Sends Cancel for it (as `signal` does). */
  cancel(): void;
}

/** Lines kept while nobody iterates `logs`; past it the oldest are dropped (and counted). */
const UNREAD_LINES = 10_000;
/** Lines queued for an active iterator before the connection stops being read. */
const HIGH_WATER = 256;

/** `logs`: bounded; while its reader is behind, the channel stops reading (backpressure). */
class LogQueue implements AsyncIterable<JobLogLine> {
  private readonly lines: JobLogLine[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  private reading = false;
  private blocked = false;
  dropped = 0;

  constructor(private readonly ctx: ClientContext) {}

  push(line: JobLogLine): void {
    if (this.ended) return;
    this.lines.push(line);
    if (!this.reading && this.lines.length > UNREAD_LINES) {
      this.lines.shift();
      this.dropped++;
    }
    if (this.reading && this.lines.length >= HIGH_WATER && !this.blocked) {
      this.blocked = true;
      this.ctx.channel.block(this);
    }
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.unblock();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private unblock(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.ctx.channel.unblock(this);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<JobLogLine> {
    this.reading = true;
    try {
      for (;;) {
        const line = this.lines.shift();
        if (line) {
          if (this.lines.length < HIGH_WATER / 2) this.unblock();
          yield line;
          continue;
        }
        if (this.ended) return;
        this.unblock();
        await new Promise<void>((resolve) => {
          this.waiter = resolve;
        });
      }
    } finally {
      this.reading = false;
      this.unblock();
    }
  }
}

/** A payload as bytes: bytes as they are, a string as UTF-8, anything else as JSON. */
export function jobPayload(payload: Uint8Array | string | object): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  return Buffer.from(JSON.stringify(payload), 'utf8');
}

/** Starts job `type` with `payload` bytes (see {@link JobRun}). */
export function runJob(
  ctx: ClientContext,
  type: string,
  payload: Uint8Array,
  options: RunJobOptions = {},
): JobRun {
  if (typeof type !== 'string' || type === '') throw new TypeError('runJob() needs a job type name');
  const { signal, onLog, onData } = options;
  const channel = ctx.channel;
  const token = channel.allocateToken();
  const logs = new LogQueue(ctx);
  let settle!: (err: Error | null, body?: Buffer) => void;
  const result = new Promise<Buffer>((resolve, reject) => {
    let done = false;
    settle = (err, body) => {
      if (done) return;
      done = true;
      channel.unregisterProcess(token);
      signal?.removeEventListener('abort', onAbort);
      logs.end();
      if (err) reject(err);
      else resolve(body!);
    };
  });
  const sink: ProcessSink = {
    command: 'ExecuteJob',
    onEvent(event, body) {
      try {
        if (event === EventCode.Log) {
          const e = decodeEventBody('Log', body);
          const line = { level: LEVEL_NAMES[e.level] ?? 'info', text: e.text };
          onLog?.(line);
          logs.push(line);
        } else if (event === EventCode.JobData) onData?.(Buffer.from(decodeEventBody('JobData', body).data));
      } catch {
        // An event that does not decode is ignored, as any unknown event kind.
      }
    },
    onFailure: (err) => settle(err),
    onResult: (body) => {
      try {
        settle(null, Buffer.from(decodeResult('ExecuteJob', body).result));
      } catch (err) {
        settle(err as Error);
      }
    },
  };
  channel.registerProcess(token, sink, ctx.agentType);
  const cancel = () => {
    channel.cancel(ctx.agentType, token);
  };
  const onAbort = () => cancel();
  ctx.call('ExecuteJob', { jobType: type, payload }, { token }).then(
    (r) => settle(null, Buffer.from(r.result)),
    (err: unknown) => {
      // Dropped and resumed: the agent delivers what is buffered, then the result, to the sink.
      if (
        err instanceof ConnectionError &&
        err.code === 'CONNECTION_LOST' &&
        !(err instanceof SessionLostError)
      )
        return;
      settle(err as Error);
    },
  );
  if (signal) {
    if (signal.aborted) queueMicrotask(cancel);
    else signal.addEventListener('abort', onAbort, { once: true });
  }
  // The caller may never await it (it reads logs only); the rejection is theirs to see there.
  result.catch(() => {});
  return { logs, result, cancel };
}
