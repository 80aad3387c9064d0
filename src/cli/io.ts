/** Streams and signals for the client commands: copying with backpressure, Ctrl-C, exit codes of signals. */
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { EXIT } from './errors.js';

/** Waits for 'drain' (or rejects on 'error' / resolves on 'close'). */
export function drained(out: NodeJS.WritableStream | Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      out.removeListener('drain', done);
      out.removeListener('close', done);
      out.removeListener('error', fail);
      resolve();
    };
    const fail = (err: Error) => {
      out.removeListener('drain', done);
      out.removeListener('close', done);
      reject(err);
    };
    out.once('drain', done);
    out.once('close', done);
    out.once('error', fail);
  });
}

/**
 * Copies `src` into `out` without ending `out` (it may be process.stdout),
 * honouring backpressure. Rejects with `out`'s error (e.g. EPIPE when the
 * reader of our stdout went away) or `src`'s.
 */
export async function pump(
  src: Readable,
  out: NodeJS.WritableStream & { destroyed?: boolean },
): Promise<void> {
  let failure: Error | null = null;
  const onError = (err: Error) => {
    failure ??= err;
    src.destroy();
  };
  out.on('error', onError);
  try {
    for await (const chunk of src) {
      if (failure) break;
      if (!out.write(chunk as Buffer)) await drained(out);
    }
    if (failure) throw failure;
  } catch (err) {
    throw failure ?? err;
  } finally {
    out.removeListener('error', onError);
  }
}

/** The conventional exit code for a process killed by `signal` (128 + its number). */
export function signalExitCode(signal: string | null): number {
  const n = signal ? (constants.signals as Record<string, number>)[signal] : undefined;
  return 128 + (n ?? 0);
}

/**
 * Calls `handler` on the first SIGINT/SIGTERM (Ctrl-C); a second one exits
 * at once with 130. Returns a function that removes the handlers.
 */
export function onInterrupt(handler: (signal: NodeJS.Signals) => void): () => void {
  let seen = false;
  const listener = (signal: NodeJS.Signals) => {
    if (seen) {
      process.stderr.write('outpost: interrupted again; exiting without waiting\n');
      process.exit(EXIT.INTERRUPTED);
    }
    seen = true;
    handler(signal);
  };
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return () => {
    process.removeListener('SIGINT', listener);
    process.removeListener('SIGTERM', listener);
  };
}

/** An AbortController that fires on Ctrl-C. */
export function interruptController(): {
  signal: AbortSignal;
  interrupted: () => boolean;
  dispose: () => void;
} {
  const controller = new AbortController();
  const dispose = onInterrupt(() => controller.abort());
  return { signal: controller.signal, interrupted: () => controller.signal.aborted, dispose };
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}
