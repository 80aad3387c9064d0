/**
 * A client at the byte level, for the agent's wire tests: a real TCP socket,
 * the 24-byte hello, the 9/25-byte reply, then frames made by hand (plain,
 * or AES with any key — the right one, a wrong one), every byte the agent
 * sends recorded. Unlike `connectToAgent`, it lets a test write exactly the
 * bytes it wants (a replayed frame, a tampered block) and see exactly what
 * comes back (nothing, in the cases the contract says so).
 */
import { connect, type Socket } from 'node:net';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  type AgentReply,
  agentReplySize,
  CLIENT_HEADER_SIZE,
  decodeAgentReply,
  encodeClientHello,
  encodePlainFrame,
  FrameDecoder,
  Mode,
} from '../../src/protocol/index.js';

export interface RawOptions {
  /** Key to frame with in mode aes (the agent's, or a wrong one). */
  key?: Buffer;
  sessionId?: number;
  /** Source address (127.0.0.x: Linux routes all of 127/8 to loopback). */
  localAddress?: string;
}

export class RawSession {
  readonly reply: AgentReply;
  /** Every byte received after the handshake reply. */
  private readonly after: Buffer[] = [];
  private readonly decoder: FrameDecoder | null;
  private readonly encoder: AesFrameEncoder | null;
  private readonly inbox: Buffer[] = [];
  private readonly waiters: ((m: Buffer | null) => void)[] = [];
  isClosed = false;
  readonly closed: Promise<void>;

  constructor(
    readonly socket: Socket,
    reply: AgentReply,
    rest: Buffer,
    key: Buffer | undefined,
  ) {
    this.reply = reply;
    if (reply.mode === Mode.Aes) {
      this.encoder = key ? new AesFrameEncoder(key, reply.iv!) : null;
      this.decoder = key ? new AesFrameDecoder(key, reply.iv!, { headerSize: 4 }) : null;
    } else {
      this.encoder = null;
      this.decoder = new FrameDecoder(64 * 1024 * 1024, 4);
    }
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w(null);
        resolve();
      }),
    );
    socket.on('data', (d: Buffer) => this.onData(d));
    if (rest.length > 0) this.onData(rest);
  }

  private onData(d: Buffer): void {
    this.after.push(d);
    if (!this.decoder) return;
    let messages: Buffer[];
    try {
      messages = this.decoder.push(d);
    } catch {
      return;
    }
    for (const m of messages) {
      const w = this.waiters.shift();
      if (w) w(m);
      else this.inbox.push(m);
    }
  }

  /** Every byte the agent sent after its handshake reply. */
  received(): Buffer {
    return Buffer.concat(this.after);
  }

  /** The frame bytes for a client message (`agentType | command | data`); AES moves the IV chain on. */
  frame(message: Buffer): Buffer {
    if (this.reply.mode !== Mode.Aes) return encodePlainFrame(message, CLIENT_HEADER_SIZE);
    if (!this.encoder) throw new Error('no key to frame with');
    return this.encoder.encode(message);
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Frames and writes a message; returns the bytes written. */
  send(message: Buffer): Buffer {
    const bytes = this.frame(message);
    this.write(bytes);
    return bytes;
  }

  /** The next agent message (decrypted), or null if the connection closes first. */
  next(timeoutMs = 5000): Promise<Buffer | null> {
    const m = this.inbox.shift();
    if (m) return Promise.resolve(m);
    if (this.isClosed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no agent message within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
    });
  }

  /** Resolves true when the agent closes within `ms`, false otherwise. */
  async closesWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.closed.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Connects, sends the hello, reads the reply; the rest is up to the test. */
export function openRaw(host: string, port: number, options: RawOptions = {}): Promise<RawSession> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < 1) return;
      const size = agentReplySize(got[0]!);
      if (got.length < size) return;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      try {
        const reply = decodeAgentReply(got.subarray(0, size));
        const session = new RawSession(socket, reply, got.subarray(size), options.key);
        socket.resume();
        resolve(session);
      } catch (e) {
        socket.destroy();
        reject(e);
      }
    };
    const onClose = () => reject(new Error(`closed during the handshake (got ${got.length} bytes)`));
    socket.on('error', () => {});
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('connect', () => socket.write(encodeClientHello({ sessionId: options.sessionId ?? 0 })));
  });
}
