/**
 * Entry point of one extension job's worker thread (src/host/jobs.ts starts
 * it). It imports the instance's extension modules, finds the job type,
 * runs it with the job API (src/host/job-api.ts), and reports to the host's
 * main thread by message:
 *
 *   → {t:'log', level, text} | {t:'data', data} | {t:'spawned', pid} | {t:'reaped', pid}
 *   → {t:'done', result} | {t:'fail', kind, message} | {t:'unsupported', installed}
 *   ← {t:'abort'}
 *
 * Log and data messages spend one credit of a shared counter; with none left
 * the worker blocks (Atomics.wait) until the main thread has passed earlier
 * ones on to the agent — backpressure without an unbounded queue.
 */
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import type { HostSettings } from '../protocol/index.js';
import type { InstalledExtension } from './extensions.js';
import {
  type JobContext,
  type JobFunction,
  jobResolver,
  makeLogger,
  payloadBytes,
  resultBytes,
} from './job-api.js';
import { HostError } from './types.js';

export interface WorkerInput {
  readonly type: string;
  readonly payload: Uint8Array;
  readonly settings: HostSettings;
  readonly extensions: readonly InstalledExtension[];
  readonly credits: SharedArrayBuffer;
  readonly maxExtractedBytes: number;
}

const input = workerData as WorkerInput;
const port = parentPort!;
const credits = new Int32Array(input.credits);
const controller = new AbortController();
port.on('message', (m: { t: string }) => {
  if (m.t === 'abort') controller.abort(new Error('the job was canceled'));
});

function spend(): void {
  for (;;) {
    const v = Atomics.load(credits, 0);
    if (v > 0 && Atomics.compareExchange(credits, 0, v, v - 1) === v) return;
    if (v <= 0) Atomics.wait(credits, 0, v, 1000);
  }
}

function context(type: string, payload: Uint8Array): JobContext {
  const resolve = jobResolver(input.settings);
  const ctx: JobContext = {
    type,
    payload,
    signal: controller.signal,
    root: input.settings.baseDirectory,
    log: makeLogger((level, text) => {
      spend();
      port.postMessage({ t: 'log', level, text });
    }),
    resolve,
    write: async (data: Uint8Array) => {
      spend();
      port.postMessage({ t: 'data', data: Buffer.from(data) });
    },
    spawn: (file, args = [], options = {}) => {
      const child = spawn(file, [...args], {
        cwd: input.settings.baseDirectory,
        stdio: 'ignore',
        ...options,
        detached: process.platform !== 'win32',
      });
      const announce = () => {
        const pid = child.pid!;
        port.postMessage({ t: 'spawned', pid });
        // Reaped by this thread's loop: the host waits for it before it ends the worker.
        child.once('exit', () => port.postMessage({ t: 'reaped', pid }));
      };
      if (child.pid !== undefined) announce();
      else child.once('spawn', announce);
      return child;
    },
    run: async (builtin, p) => {
      // Loaded on first use: most extension jobs never call run(), and a worker should start fast.
      const { BUILTIN_JOBS } = await import('./builtin-jobs.js');
      const f = BUILTIN_JOBS[builtin];
      if (!f) throw new HostError('Unsupported', `run(): ${builtin} is not a built-in job type`);
      return resultBytes(await f(context(builtin, payloadBytes(p))));
    },
    limits: { maxExtractedBytes: input.maxExtractedBytes },
  };
  return ctx;
}

async function main(): Promise<void> {
  const installed: string[] = [];
  let found: JobFunction | undefined;
  for (const ext of input.extensions) {
    let mod: { jobs?: Record<string, unknown> };
    try {
      mod = (await import(pathToFileURL(ext.module).href)) as typeof mod;
    } catch (err) {
      installed.push(`${ext.name} ${ext.version} (does not load: ${(err as Error).message})`);
      continue;
    }
    const jobs = mod.jobs && typeof mod.jobs === 'object' ? mod.jobs : {};
    const types = Object.keys(jobs).filter((k) => typeof jobs[k] === 'function');
    installed.push(`${types.join(', ') || 'no job types'} (${ext.name} ${ext.version})`);
    if (!found && types.includes(input.type)) found = jobs[input.type] as JobFunction;
  }
  if (!found) {
    port.postMessage({ t: 'unsupported', installed });
    return;
  }
  try {
    const value = await found(context(input.type, input.payload));
    const result = resultBytes(value);
    port.postMessage({ t: 'done', result });
  } catch (err) {
    const kind = err instanceof HostError ? err.kind : 'Internal';
    port.postMessage({ t: 'fail', kind, message: err instanceof Error ? err.message : String(err) });
  }
}

void main();
