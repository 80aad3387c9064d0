/**
 * ExecuteJob (60) in the product host (docs/EXTENSIONS.md).
 *
 * - Built-in types (`outpost.*`, src/host/builtin-jobs.ts) run on the host's
 *   main thread: they are ours, asynchronous, and check their AbortSignal.
 * - Any other type runs in a worker thread of its own, which loads the
 *   instance's extensions (src/host/extensions.ts) afresh, so the next job
 *   after an UpdateAgent sees the new version. A type nobody exports is
 *   `Unsupported`, naming the type and what is installed.
 * - Log lines go out as Log events (4), streamed bytes as JobData events
 *   (5, an Outpost extension), on the job's token through EVENT_ROUTE — the
 *   agent buffers them for a dropped connection exactly as process output
 *   (src/agent/session-hosts.ts), and the Response or Error follows them.
 * - Cancel: the job's AbortSignal fires; a worker that has not finished
 *   5 s later is terminated. Either way every process group the job
 *   started (JobContext.spawn) is killed, and the request ends with
 *   `Error Canceled` only then, so nothing of the job is left running when
 *   the client hears of the end. A job that ends normally also takes its
 *   remaining process groups with it.
 * - A job that throws: `Error Internal` with its message (or the kind of a
 *   HostError); a worker that dies without an answer: `Internal` too; one
 *   that takes the whole host down is `HostCrashed`, from the agent.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { LogLevel } from '../protocol/index.js';
import type { BrokenExtension, ExtensionCatalog } from './extensions.js';
import {
  BUILTIN_JOB_TYPES,
  DEFAULT_MAX_EXTRACTED,
  type JobContext,
  type JobFunction,
  jobResolver,
  makeLogger,
  payloadBytes,
  resultBytes,
} from './job-api.js';
import type { WorkerInput } from './job-worker.js';
import { signal as signalProcess } from './spawning.js';
import { type EventSink, type HostContext, HostError } from './types.js';

/** How long a canceled job may take to stop before it is stopped by force. */
export const JOB_CANCEL_GRACE_MS = 5000;
/** How long a finished job's worker is kept for its killed children to be reaped. */
const REAP_WAIT_MS = 1000;
/** Log/data messages a worker may have on their way to the agent at once. */
const WORKER_CREDITS = 256;

/**
 * The worker's entry: the built .js; or, running from source under tsx
 * (tests, `npm start`), a bootstrap that registers tsx in the worker first
 * (Node 20 does not apply the parent's loader to a worker's entry).
 */
function workerEntry(): { entry: string | URL; eval: boolean } {
  const ts = new URL('./job-worker.ts', import.meta.url);
  if (!import.meta.url.endsWith('.ts') || !existsSync(fileURLToPath(ts)))
    return { entry: new URL('./job-worker.js', import.meta.url), eval: false };
  const api = import.meta.resolve('tsx/esm/api');
  return {
    entry: `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ts.href)}); });`,
    eval: true,
  };
}

interface RunningJob {
  readonly pids: Set<number>;
  stop(): void;
}

export class JobManager {
  /** Loaded on the first job: a host that runs none never loads the archive libraries. */
  private catalog: ExtensionCatalog | null = null;
  private readonly running = new Set<RunningJob>();
  readonly maxExtractedBytes: number;

  constructor(
    private readonly settings: HostContext,
    private readonly sink: EventSink,
    private readonly graceMs = JOB_CANCEL_GRACE_MS,
  ) {
    this.maxExtractedBytes = settings.maxExtractedBytes ?? DEFAULT_MAX_EXTRACTED;
  }

  get count(): number {
    return this.running.size;
  }

  /** Runs job `type` for request `token`; resolves with its result bytes. */
  async run(token: number, type: string, payload: Uint8Array, signal: AbortSignal): Promise<Uint8Array> {
    if (isBuiltin(type)) return this.runBuiltin(token, type, payload, signal);
    if (!this.catalog) {
      const { ExtensionCatalog } = await import('./extensions.js');
      this.catalog ??= new ExtensionCatalog(this.settings.extensionPath, this.maxExtractedBytes);
    }
    const { installed, broken } = await this.catalog.list();
    return this.runWorker(token, type, payload, signal, installed, broken);
  }

  /** Session end: every job stopped, every process group of a job killed. */
  async shutdown(): Promise<void> {
    for (const j of [...this.running]) j.stop();
  }

  private log(token: number): (level: LogLevel, text: string) => void {
    return (level, text) => void this.sink.send(token, 'Log', { level, text });
  }

  private async send(token: number, name: 'Log' | 'JobData', body: never): Promise<void> {
    if (!this.sink.send(token, name, body)) await this.sink.whenWritable();
  }

  private async runBuiltin(
    token: number,
    type: string,
    payload: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const pids = new Set<number>();
    const job: RunningJob = { pids, stop: () => killAll(pids) };
    this.running.add(job);
    const ctx = this.context(token, type, payload, signal, pids);
    try {
      const value = await (await builtin(type))(ctx);
      if (signal.aborted) throw canceled(type);
      return resultBytes(value);
    } catch (err) {
      if (signal.aborted) throw canceled(type);
      throw err;
    } finally {
      killAll(pids);
      this.running.delete(job);
    }
  }

  /** The job API on the host's main thread (built-ins). */
  private context(
    token: number,
    type: string,
    payload: Uint8Array,
    signal: AbortSignal,
    pids: Set<number>,
  ): JobContext {
    const ctx: JobContext = {
      type,
      payload,
      signal,
      root: this.settings.baseDirectory,
      log: makeLogger(this.log(token)),
      resolve: jobResolver(this.settings),
      write: (data) => this.send(token, 'JobData', { data } as never),
      spawn: () => {
        throw new HostError('Unsupported', 'spawn() is for extension jobs');
      },
      run: async (t, p) => {
        if (!isBuiltin(t)) throw new HostError('Unsupported', `run(): ${t} is not a built-in job type`);
        return resultBytes(await (await builtin(t))(this.context(token, t, payloadBytes(p), signal, pids)));
      },
      limits: { maxExtractedBytes: this.maxExtractedBytes },
    };
    return ctx;
  }

  private runWorker(
    token: number,
    type: string,
    payload: Uint8Array,
    signal: AbortSignal,
    installed: WorkerInput['extensions'],
    broken: BrokenExtension[],
  ): Promise<Uint8Array> {
    if (signal.aborted) return Promise.reject(canceled(type));
    if (installed.length === 0) return Promise.reject(unsupported(type, [], broken));
    const credits = new SharedArrayBuffer(4);
    const counter = new Int32Array(credits);
    Atomics.store(counter, 0, WORKER_CREDITS);
    const input: WorkerInput = {
      type,
      payload: Buffer.from(payload),
      settings: this.settings,
      extensions: installed,
      credits,
      maxExtractedBytes: this.maxExtractedBytes,
    };
    const entry = workerEntry();
    const worker = new Worker(entry.entry, {
      workerData: input,
      eval: entry.eval,
      stdout: false,
      stderr: false,
    });
    const pids = new Set<number>();
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      let forceTimer: NodeJS.Timeout | null = null;
      const job: RunningJob = {
        pids,
        stop: () => {
          void worker.terminate();
          killAll(pids);
        },
      };
      this.running.add(job);
      /** Children not yet reaped by the worker's loop (a terminated worker leaves zombies). */
      const live = new Set<number>();
      let reaped: (() => void) | null = null;
      const finish = (err: Error | null, result?: Uint8Array) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (forceTimer) clearTimeout(forceTimer);
        killAll(pids);
        // The answer goes out once the job's processes are gone (reaped, or 1 s at most).
        const end = () => {
          this.running.delete(job);
          void worker.terminate();
          if (err) reject(err);
          else resolve(result!);
        };
        if (live.size === 0) return end();
        const timer = setTimeout(end, REAP_WAIT_MS);
        reaped = () => {
          if (live.size > 0) return;
          clearTimeout(timer);
          end();
        };
      };
      const onAbort = () => {
        worker.postMessage({ t: 'abort' });
        forceTimer = setTimeout(() => {
          // It did not stop in time: by force, and everything it started with it.
          void worker.terminate();
          finish(
            canceled(type, ` (it did not stop within ${this.graceMs / 1000} s and was stopped by force)`),
          );
        }, this.graceMs);
        forceTimer.unref?.();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const giveCredit = () => {
        Atomics.add(counter, 0, 1);
        Atomics.notify(counter, 0);
      };
      worker.on('message', (m: WorkerMessage) => {
        switch (m.t) {
          case 'log':
          case 'data': {
            const ok =
              m.t === 'log'
                ? this.sink.send(token, 'Log', { level: m.level, text: m.text })
                : this.sink.send(token, 'JobData', { data: m.data });
            if (ok) giveCredit();
            else void this.sink.whenWritable().then(giveCredit);
            return;
          }
          case 'spawned':
            pids.add(m.pid);
            live.add(m.pid);
            if (settled) killAll(pids);
            return;
          case 'reaped':
            live.delete(m.pid);
            reaped?.();
            return;
          case 'done':
            finish(signal.aborted ? canceled(type) : null, m.result);
            return;
          case 'fail':
            finish(signal.aborted ? canceled(type) : new HostError(m.kind, m.message));
            return;
          case 'unsupported':
            finish(unsupported(type, m.installed, broken));
            return;
        }
      });
      worker.on('error', (err) =>
        finish(signal.aborted ? canceled(type) : new HostError('Internal', `${type}: ${err.message}`)),
      );
      worker.on('exit', (code) =>
        finish(
          signal.aborted
            ? canceled(type)
            : new HostError(
                'Internal',
                `${type}: the job's worker ended (exit code ${code}) without a result`,
              ),
        ),
      );
    });
  }
}

type WorkerMessage =
  | { t: 'log'; level: LogLevel; text: string }
  | { t: 'data'; data: Uint8Array }
  | { t: 'spawned'; pid: number }
  | { t: 'reaped'; pid: number }
  | { t: 'done'; result: Uint8Array }
  | { t: 'fail'; kind: HostError['kind']; message: string }
  | { t: 'unsupported'; installed: string[] };

/** `Unsupported`, naming the type, what is installed and what is broken. */
function unsupported(
  type: string,
  installed: readonly string[],
  broken: readonly BrokenExtension[],
): HostError {
  const list = [
    ...BUILTIN_JOB_TYPES.map((t) => `${t} (built in)`),
    ...installed,
    ...broken.map((b) => `${b.file}: broken, ${b.problem}`),
  ];
  return new HostError(
    'Unsupported',
    `job type ${JSON.stringify(type)} is not installed for this instance; installed: ${list.join('; ')}`,
  );
}

function isBuiltin(type: string): boolean {
  return (BUILTIN_JOB_TYPES as readonly string[]).includes(type);
}

/** A built-in job function (the module, and tar/yauzl/yazl with it, loads on first use). */
async function builtin(type: string): Promise<JobFunction> {
  const { BUILTIN_JOBS } = await import('./builtin-jobs.js');
  return BUILTIN_JOBS[type]!;
}

function canceled(type: string, why = ''): HostError {
  return new HostError('Canceled', `ExecuteJob ${type} was canceled${why}`);
}

/** Kills every process group a job started (SIGKILL; already gone is fine). */
function killAll(pids: Set<number>): void {
  for (const pid of pids) signalProcess(pid, process.platform !== 'win32', 'SIGKILL');
  pids.clear();
}
