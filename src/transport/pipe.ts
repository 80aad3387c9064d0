/**
 * One end of the agent ↔ host pipe, used by both ends (src/agent/host-process.ts
 * and src/host/main.ts): pipe frames in (`route | message`, decoded by the
 * codec in src/protocol/pipe.ts), pipe frames out through the shared
 * `CorkedWriter`. Control messages are decoded here and surface as
 * 'control'; everything else as 'message' with its route.
 *
 * Backpressure: `send()` returns false when the pipe's buffer is full;
 * `whenWritable()` resolves at the next 'drain'. `pause()`/`resume()` stop
 * and restart reading (nested: every pause needs its resume).
 */
import { EventEmitter } from 'node:events';
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';
import {
  CONTROL_ROUTE,
  type ControlMessage,
  decodeControl,
  decodePipeFrame,
  encodeControl,
  encodePipeFrame,
  FrameDecoder,
  HOST_BOOT_FRAME_LIMIT,
  type Pieces,
} from '../protocol/index.js';
import { BULK_HIGH_WATER_MARK, CorkedWriter } from './writer.js';

export interface PipeConnectionEvents {
  /**
   * A message on a route. `pieces` only with `deliverPieces` (the agent's
   * forwarding side): a large frame that spanned reads is then those pieces,
   * not copied together, and `message` is the first of them (at least
   * PIECES_HEAD − 4 bytes: the route came first).
   */
  message: [route: number, message: Buffer, pieces: Pieces | undefined];
  control: [message: ControlMessage];
  /** A frame that does not decode: the other end is broken; the pipe stops reading. */
  corrupt: [error: Error];
  drain: [];
}

export class PipeConnection extends EventEmitter<PipeConnectionEvents> {
  private readonly decoder: FrameDecoder;
  private readonly writer: CorkedWriter;
  private waiters: (() => void)[] = [];
  private pauses = 0;
  private failed = false;

  constructor(
    readonly socket: Socket,
    frameLimit = HOST_BOOT_FRAME_LIMIT,
    /** Deliver large frames as pieces (see the 'message' event). */
    private readonly deliverPieces = false,
    /** The socket reads into a reused buffer and hands each read to `onRead()` (openPipeFd). */
    transientReads = false,
  ) {
    super();
    this.decoder = new FrameDecoder(frameLimit, 0);
    this.writer = new CorkedWriter(socket);
    socket.on('drain', () => {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
      this.emit('drain');
    });
    // A socket made by openPipeFd() reads into one reused buffer and calls onRead() instead.
    if (!transientReads) socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  /** A read into the reused buffer (openPipeFd): valid only during this call. */
  onRead(chunk: Buffer): boolean {
    if (this.failed) return false;
    let frames: Buffer[];
    try {
      frames = this.decoder.pushTransient(chunk);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    this.deliver(frames);
    // Keep reading unless a frame's handler paused us (pause() already paused the socket).
    return !this.failed && this.pauses === 0;
  }

  /** Sends one message (one buffer, or its pieces) on `route` (see EVENT_ROUTE); false when the pipe is full. */
  send(route: number, message: Buffer | Pieces): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    return this.writer.write(encodePipeFrame(route, message));
  }

  sendControl(message: ControlMessage): boolean {
    return this.send(CONTROL_ROUTE, encodeControl(message));
  }

  /**
   * Sends a control message and hands it to the kernel at once: null when it
   * is in the pipe's kernel buffer on return (a kill -9 of this process can
   * no longer lose it), else a promise that resolves once it is (or the pipe
   * has failed) — only when earlier frames are still queued here.
   */
  sendControlNow(message: ControlMessage): Promise<void> | null {
    if (this.socket.destroyed || !this.socket.writable) return null;
    let written = false;
    let resolve: (() => void) | null = null;
    this.writer.write(encodePipeFrame(CONTROL_ROUTE, encodeControl(message)), () => {
      written = true;
      resolve?.();
    });
    this.writer.flush();
    if (written || this.socket.writableLength === 0) return null;
    return new Promise<void>((r) => {
      resolve = r;
    });
  }

  get writableNeedDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Resolves when the pipe can take more (at once if it can now). */
  whenWritable(): Promise<void> {
    if (!this.socket.writableNeedDrain || this.socket.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Releases every `whenWritable()` waiter (the pipe is gone; nothing will drain). */
  releaseWaiters(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  pause(): void {
    if (this.pauses++ === 0) this.socket.pause();
  }

  resume(): void {
    if (this.pauses === 0) return;
    if (--this.pauses === 0 && !this.failed) this.socket.resume();
  }

  private onData(chunk: Buffer): void {
    if (this.failed) return;
    let frames: (Buffer | Pieces)[];
    try {
      frames = this.deliverPieces ? this.decoder.pushPieces(chunk) : this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.deliver(frames);
  }

  private deliver(frames: (Buffer | Pieces)[]): void {
    for (const frame of frames) {
      if (this.failed) return;
      let route: number;
      let message: Buffer;
      let pieces: Pieces | undefined;
      try {
        ({ route, message } = decodePipeFrame(Buffer.isBuffer(frame) ? frame : frame[0]!));
        if (!Buffer.isBuffer(frame)) pieces = [message, ...frame.slice(1)];
        if (route === CONTROL_ROUTE) {
          this.emit('control', decodeControl(message));
          continue;
        }
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      this.emit('message', route, message, pieces);
    }
  }

  private fail(err: Error): void {
    this.failed = true;
    this.socket.pause();
    this.emit('corrupt', err);
  }
}

/** Bytes one read of a pipe made by `openPipeFd()` may take (the reused buffer). */
export const PIPE_READ_SIZE = 256 * 1024;

/**
 * The pipe on an inherited descriptor (the host's fd 3), created here so that
 * its reads land in one reused buffer (Node's `onread`): no allocation per
 * read, and each frame's bytes are copied once into the frame's own buffer
 * (FrameDecoder.pushTransient), so a bulk stream leaves one buffer of garbage
 * per frame instead of a frame plus its reads (docs/ARCHITECTURE.md, "Memory bound").
 */
export function openPipeFd(fd: number, frameLimit = HOST_BOOT_FRAME_LIMIT): PipeConnection {
  let pipe: PipeConnection | null = null;
  const readBuffer = Buffer.allocUnsafe(PIPE_READ_SIZE);
  // `highWaterMark` (a Duplex option) and `onread` are honoured by net.Socket; @types/node lists neither here.
  const options: SocketConstructorOpts & { highWaterMark: number; onread: OnReadOpts } = {
    fd,
    readable: true,
    writable: true,
    highWaterMark: BULK_HIGH_WATER_MARK,
    onread: {
      buffer: readBuffer,
      callback: (n: number, buf: Uint8Array) =>
        pipe ? pipe.onRead(Buffer.from(buf.buffer, buf.byteOffset, n)) : false,
    },
  };
  const socket = new Socket(options);
  socket.setNoDelay?.(true);
  pipe = new PipeConnection(socket, frameLimit, false, true);
  return pipe;
}
