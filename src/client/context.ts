/**
 * What the SDK's feature modules share (internal): the channel, the product
 * agent type requests go to, remote path arithmetic and the chunk limit.
 */
import type { ProductCommand, RequestOf, ResultOf } from '../protocol/index.js';
import { type Channel, FRAME_OVERHEAD } from './channel.js';
import { isRemoteError } from './errors.js';
import { forEachLimited } from './limit.js';
import type { RemotePaths } from './paths.js';

/** Default bytes per ReadFile/WriteFile request. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Default requests in flight per stream. */
export const DEFAULT_WINDOW = 8;
/** Room for a request's fields besides its data (header, handle, position, length prefix, path). */
const REQUEST_ALLOWANCE = 64;
/** Paths per DeleteFiles request. */
const DELETE_BATCH = 1000;
/** DeleteFile requests in flight when DeleteFiles is not available. */
const DELETE_WINDOW = 16;

/** The channel plus the agent type, path rules and chunk limits requests use. */
export class ClientContext {
  /** Outpost extensions this agent answered `Unsupported` (another contract implementation lacks them). */
  private readonly missing = new Set<'DeleteFiles'>();

  constructor(
    readonly channel: Channel,
    readonly agentType: number,
    readonly paths: RemotePaths,
  ) {}

  /** Largest data payload one ReadFile/WriteFile/WriteAllBytes may carry (paths excluded). */
  get maxChunk(): number {
    return this.channel.agentMaxMessageSize - FRAME_OVERHEAD - REQUEST_ALLOWANCE;
  }

  /** A product request to this client's agent type. */
  call<N extends ProductCommand>(
    name: N,
    args: RequestOf<N>,
    options: { signal?: AbortSignal | undefined; path?: string | undefined; token?: number } = {},
  ): Promise<ResultOf<N>> {
    return this.channel.request(this.agentType, name, args, options);
  }

  /**
   * Deletes files (absent ones are fine): DeleteFiles (an Outpost extension)
   * in batches, or, when the agent answers `Unsupported`, one DeleteFile
   * per path — remembered, so later calls go straight to the fallback.
   */
  async deleteFiles(paths: readonly string[], signal?: AbortSignal): Promise<void> {
    let i = 0;
    for (; i < paths.length && !this.missing.has('DeleteFiles'); i += DELETE_BATCH) {
      const batch = paths.slice(i, i + DELETE_BATCH);
      try {
        await this.call('DeleteFiles', { paths: batch }, { path: batch[0], signal });
      } catch (err) {
        if (!isRemoteError(err, 'Unsupported')) throw err;
        this.missing.add('DeleteFiles');
        break;
      }
    }
    await forEachLimited(
      paths.slice(i),
      DELETE_WINDOW,
      async (path) => {
        await this.call('DeleteFile', { path }, { path, signal });
      },
      signal,
    );
  }

  /** `requested` (or the default) clamped to what one message can carry. */
  chunkSize(requested: number | undefined, pathBytes = 0): number {
    const size = requested ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`chunkSize must be a positive integer number of bytes, got ${String(requested)}`);
    return Math.max(1, Math.min(size, this.maxChunk - pathBytes));
  }
}

/** Validates a window (requests in flight). */
export function checkWindow(window: number | undefined): number {
  const w = window ?? DEFAULT_WINDOW;
  if (!Number.isInteger(w) || w < 1 || w > 1024)
    throw new RangeError(`window must be an integer between 1 and 1024, got ${String(window)}`);
  return w;
}

/** Does nothing (for ignored promise outcomes). */
export function noop(): void {}
