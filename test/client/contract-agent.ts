/**
 * A tiny agent written from the contract alone (PROTOCOL.md §1–§5), over a
 * real loopback TCP socket, mode none. It shares no code with src/agent or
 * src/protocol: every byte is written and read here by hand, so the SDK
 * tests that use it prove the SDK talks to an independent implementation
 * (one without Outpost's extensions: DeleteFiles and ListProcesses get
 * `Error Unsupported`, as any contract-only agent answers them).
 *
 * Product commands are answered by `handlers` (by command code); anything
 * without a handler is `Error Unsupported`. Every frame received is recorded.
 */
import { createServer, type Server, type Socket } from 'node:net';

const GUID = Buffer.from('4ED2EB6CF74A134AB9AF81D3DFC644BE', 'hex');

/** One frame the agent received. */
export interface Received {
  agentType: number;
  command: number;
  /** Product frames: the token; meta frames: null. */
  token: number | null;
  data: Buffer;
}

/** Little-endian writer for the contract's types (§1). */
export class Out {
  private parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.parts.push(b);
    return this;
  }
  i64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  string(s: string): this {
    const bytes = Buffer.from(s, 'utf8');
    let n = bytes.length;
    const len: number[] = [];
    do {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    this.parts.push(Buffer.from(len), bytes);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.i32(b.length);
    this.parts.push(Buffer.from(b));
    return this;
  }
  nullableString(s: string | null): this {
    return s === null ? this.bool(false) : this.bool(true).string(s);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Little-endian reader for request data. */
export class In {
  private off = 0;
  constructor(private readonly b: Buffer) {}
  u8(): number {
    return this.b[this.off++]!;
  }
  bool(): boolean {
    return this.u8() !== 0;
  }
  i32(): number {
    const v = this.b.readInt32LE(this.off);
    this.off += 4;
    return v;
  }
  i64(): bigint {
    const v = this.b.readBigInt64LE(this.off);
    this.off += 8;
    return v;
  }
  string(): string {
    let n = 0;
    let shift = 0;
    for (;;) {
      const c = this.u8();
      n |= (c & 0x7f) << shift;
      shift += 7;
      if ((c & 0x80) === 0) break;
    }
    const s = this.b.subarray(this.off, this.off + n).toString('utf8');
    this.off += n;
    return s;
  }
  bytes(): Buffer {
    const n = this.i32();
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  strings(): string[] {
    const n = this.i32();
    return Array.from({ length: n }, () => this.string());
  }
}

/** A datetime (§1): .NET ticks from a JS time. */
export const ticks = (ms: number) => BigInt(ms) * 10_000n + 621355968000000000n;

/** FileEntry (§5.2). */
export function fileEntry(
  out: Out,
  e: { fullPath: string; isDirectory: boolean; size: number; mtimeMs: number; mode: number },
): Out {
  return out.string(e.fullPath).bool(e.isDirectory).i64(e.size).i64(ticks(e.mtimeMs)).i32(e.mode);
}

/** What a product handler may do with a request. */
export interface Reply {
  /** 100 Response with these result bytes. */
  response(result?: Buffer): void;
  /** 101 Error. */
  error(kind: string, message: string, detail?: string | null): void;
  /** 102 Event with this kind and payload. */
  event(kind: number, payload: Buffer): void;
}

export type Handler = (args: In, reply: Reply, token: number) => void;

export interface ContractAgentOptions {
  /** Product handlers by command code. */
  handlers?: Record<number, Handler>;
  /** UpdateAgent: null succeeds (no reply), a string fails with that MetaError message. */
  updateFailure?: string | null;
  /** Packed agent version sent in the handshake. */
  version?: number;
}

/** Agent → client message: `int32 length | int32 command | data` (§4, plain). */
function frame(command: number, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeInt32LE(data.length, 0);
  head.writeInt32LE(command, 4);
  return Buffer.concat([head, data]);
}

export class ContractAgent {
  readonly received: Received[] = [];
  readonly sockets = new Set<Socket>();
  private nextSession = 1000;
  private readonly sessions = new Set<number>();
  private server!: Server;
  port = 0;

  constructor(readonly options: ContractAgentOptions = {}) {}

  async start(): Promise<this> {
    this.server = createServer((s) => this.onConnection(s));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Received frames with this agent type and command. */
  frames(agentType: number, command: number): Received[] {
    return this.received.filter((f) => f.agentType === agentType && f.command === command);
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let greeted = false;
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!greeted) {
        if (buf.length < 24) return;
        if (!buf.subarray(0, 16).equals(GUID) || buf.readInt32LE(16) !== 1000) return socket.destroy();
        const asked = buf.readInt32LE(20);
        const session = asked !== 0 && this.sessions.has(asked) ? asked : this.nextSession++;
        this.sessions.add(session);
        socket.write(
          new Out()
            .u8(0)
            .i32(session)
            .i32(this.options.version ?? 0x01020304)
            .done(),
        );
        buf = buf.subarray(24);
        greeted = true;
      }
      // Client → agent: int32 dataLength | byte agentType | int32 command | data.
      while (buf.length >= 9) {
        const len = buf.readInt32LE(0);
        if (buf.length < 9 + len) break;
        const agentType = buf[4]!;
        const command = buf.readInt32LE(5);
        const data = Buffer.from(buf.subarray(9, 9 + len));
        buf = buf.subarray(9 + len);
        this.onFrame(socket, agentType, command, data);
      }
    });
  }

  private onFrame(socket: Socket, agentType: number, command: number, data: Buffer): void {
    const send = (cmd: number, body: Buffer) => socket.write(frame(cmd, body));
    if (agentType === 0) {
      this.received.push({ agentType, command, token: null, data });
      const args = new In(data);
      switch (command) {
        case 1: // UpdateAgent: no reply on success
          if (this.options.updateFailure) send(9, new Out().i32(1).string(this.options.updateFailure).done());
          return;
        case 2: // GetAgentRootPath: byte agentType → string
          send(2, new Out().string(`/srv/contract/${args.u8()}`).done());
          return;
        case 3: // Ping: int32 token echoed
          send(3, new Out().i32(args.i32()).done());
          return;
        case 4: // GetAgentInfo
          send(
            4,
            new Out()
              .string('ContractAgent')
              .string('9.8.7')
              .i32(1000)
              .string('fake-host')
              .string('linux')
              .string('6.0')
              .string('x64')
              .i32(4242)
              .i64(1234)
              .bytes(Buffer.from([0, 1, 2, 3]))
              .u8(0)
              .done(),
          );
          return;
        case 5: // CloseSession: empty reply, then close
          send(5, Buffer.alloc(0));
          socket.end();
          return;
        default:
          send(9, new Out().i32(command).string(`unknown meta command ${command}`).done());
          return;
      }
    }
    const token = data.readInt32LE(0);
    this.received.push({ agentType, command, token, data });
    const reply: Reply = {
      response: (result = Buffer.alloc(0)) => send(100, Buffer.concat([new Out().i32(token).done(), result])),
      error: (kind, message, detail = null) =>
        send(101, new Out().i32(token).string(kind).string(message).nullableString(detail).done()),
      event: (kind, payload) => send(102, Buffer.concat([new Out().i32(token).u8(kind).done(), payload])),
    };
    if (command === 99) return; // Cancel: no reply of its own
    const handler = this.options.handlers?.[command];
    if (handler) handler(new In(data.subarray(4)), reply, token);
    else reply.error('Unsupported', `command ${command} is not implemented`);
  }
}
