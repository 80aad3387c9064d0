/**
 * A message connection over a socket: frames in, frames out.
 *
 * `FramedConnection` wraps a connected `net.Socket` or `tls.TLSSocket` and a
 * frame codec (plain, or AES-CBC from src/protocol/frames.ts). It is used by
 * the agent and by the client alike, after the handshake.
 *
 * Reading: messages are delivered as 'message' events once a listener is
 * attached. `pause()` stops delivery at once (messages already decoded from
 * the current socket chunk are held, never dropped) and stops reading the
 * socket, so TCP flow control pushes back on the peer; `resume()` restarts.
 *
 * Writing: `send()` frames a message and writes it. Writes made in the same
 * tick are corked and leave in one `writev`; large plain messages are written
 * as header + the caller's buffer (no copy). `send()` returns false once the
 * socket's write buffer is above its high-water mark: stop sending until
 * 'drain'. The buffer passed to `send()` must not be modified afterwards.
 *
 * Errors: a `ProtocolError` from the decoder (oversize length, undecryptable
 * frame…) destroys this connection only; 'close' then carries the error.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  AGENT_HEADER_SIZE,
  CLIENT_HEADER_SIZE,
  DEFAULT_MAX_MESSAGE_SIZE,
  encodePlainFrame,
  FrameDecoder,
  frameHeader,
  isProtocolError,
  joinPieces,
  type Pieces,
  piecesLength,
  type ReplayCache,
} from '../protocol/index.js';
import { CorkedWriter } from './writer.js';

/** The wire mode names used in configuration and options. */
export type EncryptionMode = 'none' | 'ssl' | 'aes';

/** Turns messages into frame bytes and frame bytes into messages, for one connection. */
export interface FrameCodec {
  readonly kind: 'plain' | 'aes';
  readonly decoder: FrameDecoder;
  /** The buffers to write, in order, for one message (one buffer, or its pieces). */
  encode(message: Buffer | Pieces): Buffer[];
}

/**
 * Which end of the wire a connection is: the agent reads client messages
 * (`agentType | command | data`, a 5-byte header) and writes agent messages
 * (`command | data`, 4 bytes); the client the other way round.
 */
export type WireRole = 'agent' | 'client';

/** Header sizes for a role: what it reads, what it writes. */
export function headerSizes(role: WireRole): { read: number; write: number } {
  return role === 'agent'
    ? { read: CLIENT_HEADER_SIZE, write: AGENT_HEADER_SIZE }
    : { read: AGENT_HEADER_SIZE, write: CLIENT_HEADER_SIZE };
}

/** Plain messages up to this size are copied after their header (one buffer); larger ones are not. */
const COPY_THRESHOLD = 16 * 1024;
/** Largest message `send()` accepts (the frame length is an int32; AES adds up to 32 bytes). */
const MAX_SEND_SIZE = 0x7fffffff - 64;
/** How long `close()` waits for the peer before destroying the socket. */
const DEFAULT_CLOSE_TIMEOUT_MS = 2000;

/** Plain frames (modes none and ssl) for one end of the wire. */
export function plainCodec(role: WireRole, maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE): FrameCodec {
  const sizes = headerSizes(role);
  return {
    kind: 'plain',
    decoder: new FrameDecoder(maxMessageSize, sizes.read),
    encode(message) {
      const length = piecesLength(message);
      if (length < sizes.write) throw new RangeError(`a message has at least its ${sizes.write}-byte header`);
      if (length <= COPY_THRESHOLD) return [encodePlainFrame(joinPieces(message), sizes.write)];
      const header = frameHeader(length - sizes.write);
      return Buffer.isBuffer(message) ? [header, message] : [header, ...message];
    },
  };
}

export interface AesCodecOptions {
  maxMessageSize?: number | undefined;
  /** The agent's process-wide replay cache (§3); clients need none. */
  replay?: ReplayCache | undefined;
}

/** AES-CBC frames for one end of the wire; both directions start from the handshake IV. */
export function aesCodec(
  role: WireRole,
  key: Uint8Array,
  handshakeIv: Uint8Array,
  options: AesCodecOptions = {},
): FrameCodec {
  const sizes = headerSizes(role);
  const encoder = new AesFrameEncoder(key, handshakeIv);
  return {
    kind: 'aes',
    decoder: new AesFrameDecoder(key, handshakeIv, {
      maxSize: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
      headerSize: sizes.read,
      ...(options.replay ? { replay: options.replay } : {}),
    }),
    encode(message) {
      if (piecesLength(message) < sizes.write)
        throw new RangeError(`a message has at least its ${sizes.write}-byte header`);
      return encoder.encodePieces(message);
    },
  };
}

export interface FramedConnectionEvents {
  /**
   * One message. `pieces` only after `deliverPieces()`, for a large frame
   * that spanned socket reads: the message is then those pieces (not
   * copied together), and `message` is the first of them, which holds at
   * least PIECES_HEAD bytes (src/protocol/frames.ts).
   */
  message: [message: Buffer, pieces: Pieces | undefined];
  drain: [];
  close: [error: Error | undefined];
}

export interface FramedConnectionOptions {
  /** Shown in errors and logs; defaults to the socket's remote address. */
  label?: string;
  /** Wire mode, for information (logs, principals). */
  mode?: EncryptionMode;
}

export class FramedConnection extends EventEmitter<FramedConnectionEvents> {
  /** The socket the frames travel on (a TLSSocket in mode ssl). */
  readonly socket: Socket | TLSSocket;
  readonly mode: EncryptionMode;
  readonly remoteAddress: string;
  readonly remotePort: number;
  private readonly codec: FrameCodec;
  private readonly pending: (Buffer | Pieces)[] = [];
  private pieces = false;
  private userPaused = false;
  private started = false;
  private readonly writer: CorkedWriter;
  private ending = false;
  private isClosed = false;
  private closeError: Error | undefined;
  private delivering = false;

  constructor(socket: Socket | TLSSocket, codec: FrameCodec, options: FramedConnectionOptions = {}) {
    super();
    this.socket = socket;
    this.codec = codec;
    this.writer = new CorkedWriter(socket);
    this.mode = options.mode ?? (codec.kind === 'aes' ? 'aes' : 'none');
    this.remoteAddress = socket.remoteAddress ?? 'unknown';
    this.remotePort = socket.remotePort ?? 0;
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.on('drain', () => this.emit('drain'));
    socket.once('close', () => {
      this.isClosed = true;
      this.pending.length = 0;
      this.emit('close', this.closeError);
    });
    if (socket.destroyed) {
      this.isClosed = true;
      process.nextTick(() => this.emit('close', this.closeError ?? new Error('socket already closed')));
      return;
    }
    // Reading starts when the first 'message' listener is attached, so no
    // message can be emitted before the owner is ready for it.
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'message' && !this.started) {
        this.started = true;
        queueMicrotask(() => this.startReading());
      }
    });
  }

  /** True once the socket has closed. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** True while the write buffer is above its high-water mark (wait for 'drain'). */
  get writableNeedDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Bytes queued for writing and not yet handed to the OS. */
  get writableLength(): number {
    return this.socket.writableLength;
  }

  /** True while reading is paused by `pause()`. */
  get isPaused(): boolean {
    return this.userPaused;
  }

  /**
   * From now on, large frames that span socket reads are delivered as their
   * pieces (see the 'message' event) instead of being copied into one buffer:
   * for an owner that forwards them (the agent), not one that parses them.
   */
  deliverPieces(): void {
    this.pieces = true;
  }

  /**
   * Frames and writes one message (one buffer, or its pieces in order).
   * Returns false when the write buffer is over its high-water mark (the
   * message is still queued; wait for 'drain'), and also after the
   * connection was closed (the message is discarded).
   */
  send(message: Buffer | Pieces): boolean {
    const length = piecesLength(message);
    if (length > MAX_SEND_SIZE) throw new RangeError(`message of ${length} bytes is too large`);
    if (this.isClosed || this.ending || this.socket.destroyed) return false;
    return this.writer.write(this.codec.encode(message));
  }

  /** Stops delivering messages and reading the socket until `resume()`. */
  pause(): void {
    if (this.userPaused) return;
    this.userPaused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.userPaused) return;
    this.userPaused = false;
    if (!this.started) return;
    this.deliver();
    if (!this.userPaused && this.pending.length === 0 && !this.ending) this.socket.resume();
  }

  /**
   * Closes gracefully: queued writes are flushed, then the socket is ended.
   * Messages that arrive afterwards are ignored. If the peer has not closed
   * its side within `timeoutMs`, the socket is destroyed.
   */
  close(timeoutMs = DEFAULT_CLOSE_TIMEOUT_MS): void {
    if (this.isClosed || this.ending) return;
    this.ending = true;
    this.pending.length = 0;
    this.socket.end();
    // Keep reading (and discarding) so the peer's FIN is seen and 'close' follows.
    this.socket.resume();
    const timer = setTimeout(() => this.socket.destroy(), timeoutMs);
    timer.unref();
    this.socket.once('close', () => clearTimeout(timer));
  }

  /** Closes at once, discarding queued writes. */
  destroy(err?: Error): void {
    if (err) this.closeError ??= err;
    this.pending.length = 0;
    this.socket.destroy();
  }

  private startReading(): void {
    if (this.isClosed) return;
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    if (this.userPaused) this.socket.pause();
    else this.socket.resume();
  }

  private onData(chunk: Buffer): void {
    if (this.ending || this.isClosed) return;
    let messages: (Buffer | Pieces)[];
    try {
      messages = this.pieces ? this.codec.decoder.pushPieces(chunk) : this.codec.decoder.push(chunk);
    } catch (err) {
      this.destroy(isProtocolError(err) ? err : new Error(`frame decoding failed: ${String(err)}`));
      return;
    }
    for (const m of messages) this.pending.push(m);
    this.deliver();
    if (this.pending.length > 0 && !this.isClosed) this.socket.pause();
  }

  private deliver(): void {
    if (this.delivering) return;
    this.delivering = true;
    try {
      while (this.pending.length > 0 && !this.userPaused && !this.ending && !this.isClosed) {
        const m = this.pending.shift()!;
        try {
          if (Buffer.isBuffer(m)) this.emit('message', m, undefined);
          else this.emit('message', m[0]!, m);
        } catch (err) {
          // A throwing listener is a bug in the owner; it must not take the process down.
          this.destroy(err instanceof Error ? err : new Error(String(err)));
          return;
        }
      }
    } finally {
      this.delivering = false;
    }
  }
}
