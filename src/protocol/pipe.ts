/**
 * The agent ↔ product host pipe codec (docs/ARCHITECTURE.md, "The host
 * pipe"). It runs over a private socket pair (fd 3 of the host), never on
 * the network, unencrypted:
 *
 *   int32 bodyLength | int32 route | message
 *
 * - route > 0: a wire message of the agent connection with that route id —
 *   a client message (`agentType | command | data`) going to the host, or
 *   the host's Response/Error to it (`command | data`). Wire messages pass
 *   through byte for byte.
 * - route 0 (EVENT_ROUTE): an Event (or the final Response/Error of a
 *   reserved token) that the agent delivers by token to whichever connection
 *   of the session is attached.
 * - route −1 (CONTROL_ROUTE): a control message, `byte control | payload`.
 *
 * The host's settings travel once, as the payload of Init (UTF-8 JSON of
 * `HostSettings`), so a host can be started before it has a session.
 */
import { BinaryReader, BinaryWriter } from './binary.js';
import { FRAME_LENGTH_SIZE } from './constants.js';
import { ProtocolError } from './errors.js';
import { joinPieces, type Pieces, piecesLength } from './frames.js';

export const ROUTE_SIZE = 4;
/** Route of events (delivered by token). */
export const EVENT_ROUTE = 0;
/** Route of control messages. */
export const CONTROL_ROUTE = -1;

export const HostControl = {
  /** both ways: liveness probe; the host echoes it (and sends one when it is up). */
  Ping: 1,
  /** agent → host: terminate every process, close every handle, then exit. */
  Shutdown: 2,
  /** agent → host, first message: the host's settings (JSON). */
  Init: 3,
  /**
   * host → agent: `i32 open` file handles, sent when that number goes from 0
   * to more or back to 0, before the reply of the request that changed it.
   * The one thing a host holds that the agent cannot see in what it routes
   * (docs/ARCHITECTURE.md, "Idle hosts").
   */
  Handles: 4,
  /**
   * host → agent: `bool exists | string path` — the temp file (or directory)
   * of an atomic write at `path` is about to be created (true), or is gone
   * (false: renamed over its target or removed). A host killed mid-write
   * cannot remove its temp file; the agent removes the ones still listed
   * when the host ends (docs/ARCHITECTURE.md, "Temp files of a dead host").
   * The host makes sure "exists" has reached the pipe's kernel buffer before
   * it creates the file, so a kill -9 cannot lose it.
   */
  Temp: 5,
  /**
   * agent → host, after Init: new settings (JSON, the same shape) on a config
   * reload. The host applies `allowedRoots`, `maxOpenFiles` and
   * `maxProcesses` to requests that arrive after it; the rest stays as Init
   * said (paths and the message limit are fixed for a host's life).
   */
  Settings: 6,
  /**
   * agent → host: the session this host served has ended and the host held
   * nothing (no request, process, job or handle); it drops that session's
   * state (its dispatcher) and waits for the next Init as a spare does
   * (docs/ARCHITECTURE.md, "Warm spare hosts").
   */
  Recycle: 7,
} as const;
export type HostControl = (typeof HostControl)[keyof typeof HostControl];

/** What a host knows about where it runs; sent once in Init. */
export interface HostSettings {
  /** Product type this host serves (1–3). */
  readonly agentType: number;
  /** The product's root path (created on demand); relative paths resolve against it. */
  readonly rootPath: string;
  /** Relative paths in requests resolve against this directory (normally rootPath). */
  readonly baseDirectory: string;
  /** When set, every path must resolve inside one of these directories, else `AccessDenied`. */
  readonly allowedRoots: readonly string[] | null;
  /** The connection's data limit; larger results are `TooLarge`. */
  readonly maxMessageSize: number;
  /** Open file handles allowed per session. */
  readonly maxOpenFiles: number;
  /** Concurrent processes allowed per session. */
  readonly maxProcesses: number;
  /**
   * The first file handle this host gives out (default 1). The agent starts
   * each host of a session and product type further on, so a handle of a
   * host that ended never names a file of the one after it.
   */
  readonly firstHandle?: number;
  /**
   * Why the previous host of this session and product type ended, when it
   * crashed (null or absent: there was none, or it held nothing): a handle
   * below `firstHandle` is then `HostCrashed`, not an unknown handle.
   */
  readonly handlesLostBy?: string | null;
  /** Every product's root path (the SetMode guard protects them all), if known. */
  readonly productRoots?: readonly string[];
  /** Where this host's instance keeps UpdateAgent files (extensions), if known. */
  readonly extensionPath?: string | null;
  /** Most bytes one archive extraction (a job, an extension package) may write (MaxExtractedSize). */
  readonly maxExtractedBytes?: number;
}

/** Largest pipe frame before the host knows its settings. */
export const HOST_BOOT_FRAME_LIMIT = 1024 * 1024 * 1024 + 4096;

/** Pipe frame limit for a wire limit: the data, the wire header and token, the route, some slack. */
export function pipeFrameLimit(maxMessageSize: number): number {
  return maxMessageSize + ROUTE_SIZE + 1024;
}

/** Messages at least this large are written after their pipe header rather than copied behind it. */
export const PIPE_COPY_THRESHOLD = 16 * 1024;

/** The 8 bytes in front of a message in a pipe frame. */
export function pipeFrameHeader(route: number, messageLength: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_LENGTH_SIZE + ROUTE_SIZE);
  out.writeInt32LE(ROUTE_SIZE + messageLength, 0);
  out.writeInt32LE(route, FRAME_LENGTH_SIZE);
  return out;
}

/** The buffers to write for one pipe frame (small messages copied into one buffer). */
export function encodePipeFrame(route: number, message: Uint8Array | Pieces): Buffer[] {
  if (!(message instanceof Uint8Array)) {
    const length = piecesLength(message);
    if (length >= PIPE_COPY_THRESHOLD) return [pipeFrameHeader(route, length), ...message];
    message = joinPieces(message);
  }
  if (message.length >= PIPE_COPY_THRESHOLD)
    return [pipeFrameHeader(route, message.length), message as Buffer];
  const out = Buffer.allocUnsafe(FRAME_LENGTH_SIZE + ROUTE_SIZE + message.length);
  out.writeInt32LE(ROUTE_SIZE + message.length, 0);
  out.writeInt32LE(route, FRAME_LENGTH_SIZE);
  out.set(message, FRAME_LENGTH_SIZE + ROUTE_SIZE);
  return [out];
}

/** Splits a pipe frame body (as a FrameDecoder with header size 0 returns it) into route and message. */
export function decodePipeFrame(body: Buffer): { route: number; message: Buffer } {
  if (body.length < ROUTE_SIZE) throw new ProtocolError('TRUNCATED', 'pipe frame shorter than its route');
  return { route: body.readInt32LE(0), message: body.subarray(ROUTE_SIZE) };
}

export type ControlMessage =
  | { control: typeof HostControl.Ping; token: number }
  | { control: typeof HostControl.Shutdown }
  | { control: typeof HostControl.Recycle }
  | { control: typeof HostControl.Init; settings: HostSettings }
  | { control: typeof HostControl.Handles; open: number }
  | { control: typeof HostControl.Temp; exists: boolean; path: string }
  | { control: typeof HostControl.Settings; settings: HostSettings };

/**
 * Whether `name` (a file name, no directory) has the form of a host's temp
 * file, `.<name>.<12 hex digits>.tmp` (src/host/fs-util.ts tempNameFor):
 * the agent removes nothing else on a host's behalf.
 */
export function isHostTempName(name: string): boolean {
  return /^\..+\.[0-9a-f]{12}\.tmp$/s.test(name);
}

export function encodeControl(message: ControlMessage): Buffer {
  const w = new BinaryWriter(64).u8(message.control);
  if (message.control === HostControl.Ping) w.i32(message.token);
  else if (message.control === HostControl.Handles) w.i32(message.open);
  else if (message.control === HostControl.Temp) w.bool(message.exists).string(message.path);
  else if (message.control === HostControl.Init || message.control === HostControl.Settings)
    w.string(JSON.stringify(message.settings));
  return w.view();
}

export function decodeControl(message: Uint8Array): ControlMessage {
  const r = new BinaryReader(message);
  const control = r.u8();
  switch (control) {
    case HostControl.Ping:
      return { control, token: r.i32() };
    case HostControl.Shutdown:
    case HostControl.Recycle:
      return { control };
    case HostControl.Handles:
      return { control, open: r.i32() };
    case HostControl.Temp: {
      const exists = r.bool();
      return { control, exists, path: r.string() };
    }
    case HostControl.Init:
    case HostControl.Settings: {
      let settings: HostSettings;
      try {
        settings = JSON.parse(r.string()) as HostSettings;
      } catch (err) {
        throw new ProtocolError('BAD_VALUE', `Init settings are not JSON: ${String(err)}`);
      }
      return { control, settings };
    }
    default:
      throw new ProtocolError('UNKNOWN_COMMAND', `unknown host control ${control}`);
  }
}
