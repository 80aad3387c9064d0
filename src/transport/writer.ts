/**
 * The one writer every socket kind uses (client and agent connections, both
 * ends of the host pipe): pieces written in the same tick are corked and
 * leave in one `writev`, large pieces are written as they are (no copy), and
 * the return value is the socket's backpressure signal.
 */
import type { Socket } from 'node:net';

/**
 * The write high-water mark of the sockets bulk data crosses (the agent's
 * client sockets, TLS included, and the host's end of its pipe): one default
 * SDK chunk. At Node's default (16 KiB) every 64 KiB output event filled the
 * buffer, and each one cost a pause, a 'drain' and a resume of the reader
 * behind it. Memory: a socket holds at most this plus one frame before its
 * writer stops (docs/ARCHITECTURE.md, "Memory bound").
 */
export const BULK_HIGH_WATER_MARK = 1024 * 1024;

export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  /**
   * Writes the pieces of one frame, in order; `written` (if given) runs once
   * they have left for the kernel or failed. False: the socket's buffer is
   * full (wait for 'drain').
   */
  write(pieces: readonly Buffer[], written?: () => void): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    const last = pieces.length - 1;
    for (let i = 0; i < last; i++) this.socket.write(pieces[i]!);
    if (last >= 0) this.socket.write(pieces[last]!, written);
    return !this.socket.writableNeedDrain;
  }

  /** Hands what this tick corked to the socket now instead of at the end of the tick. */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }
}
