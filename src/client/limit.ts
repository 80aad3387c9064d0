/** A small concurrency limiter for transfers (internal). */
import { abortReason } from './errors.js';

/**
 * Runs `fn` over `items` with at most `limit` calls in flight. Stops taking
 * new items at the first failure (or abort) and rejects with it once the
 * calls already started have settled, so nothing keeps running behind the
 * caller's back.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      if (signal?.aborted) {
        failure ??= { error: abortReason(signal) };
        return;
      }
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  const n = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/** Validates a concurrency option. */
export function checkConcurrency(value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > 256)
    throw new RangeError(`concurrency must be an integer between 1 and 256, got ${String(value)}`);
  return v;
}
