/**
 * What the SDK's feature modules share (internal): the channel, the product
 * agent type requests go to, remote path arithmetic and the chunk limit.
 */
import type { ProductCommand, RequestOf, ResultOf } from '../protocol/index.js';
import { type Channel, FRAME_OVERHEAD } from './channel.js';
import type { RemotePaths } from './paths.js';

/** Default bytes per ReadFile/WriteFile request. */
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** Default requests in flight per stream. */
export const DEFAULT_WINDOW = 8;
/** Room for a request's fields besides its data (header, handle, position, length prefix, path). */
const REQUEST_ALLOWANCE = 64;

/** The channel plus the agent type, path rules and chunk limits requests use. */
export class ClientContext {
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
