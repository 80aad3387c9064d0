/**
 * The one writer every socket kind uses (client and agent connections, both
 * ends of the host pipe): pieces written in the same tick are corked and
 * leave in one `writev`, large pieces are written as they are (no copy), and
 * the return value is the socket's backpressure signal.
 */
import type { Socket } from 'node:net';

export class CorkedWriter {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  /** Writes the pieces of one frame, in order. False: the socket's buffer is full (wait for 'drain'). */
  write(pieces: readonly Buffer[]): boolean {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    for (const piece of pieces) this.socket.write(piece);
    return !this.socket.writableNeedDrain;
  }
}
