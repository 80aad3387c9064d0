/**
 * The agent ↔ product host pipe (docs/ARCHITECTURE.md, "Host processes").
 * It carries length-prefixed frames, unencrypted, over a private socket pair
 * (fd 3 of the host). Each frame body is `i32 route | message`: the route
 * names the agent connection that sent a request, and the host echoes it on
 * the Response or Error. Process events carry route 0; the agent delivers
 * them by process token to whichever connection of the session is attached.
 * Wire messages pass through byte for byte. Control messages use route 0
 * and agent type HOST_CONTROL.
 */
import { BinaryWriter } from './binary.js';
import { FRAME_HEADER_SIZE } from './constants.js';

/** Agent type byte reserved for agent ↔ host control messages (never on the wire). */
export const HOST_CONTROL = 0xff;

export const HostControl = {
  /** agent → host: liveness probe; the host echoes the message. */
  Ping: 1,
  /** agent → host: terminate every process, close every handle, then exit. */
  Shutdown: 2,
  /** agent → host, first message: the host's settings as UTF-8 JSON after the header. */
  Init: 3,
} as const;

/** Largest pipe frame before the host knows its settings. */
export const HOST_BOOT_FRAME_LIMIT = 256 * 1024 * 1024 + 4096;

export const ROUTE_SIZE = 4;
/** Route of events and control messages. */
export const NO_ROUTE = 0;

/** Host frame limit: the wire limit plus the route and some slack. */
export function hostFrameLimit(maxMessageSize: number): number {
  return maxMessageSize + ROUTE_SIZE + 1024;
}

/** One whole pipe frame: length, route, message. */
export function encodeHostFrame(route: number, message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + ROUTE_SIZE + message.length);
  out.writeInt32LE(ROUTE_SIZE + message.length, 0);
  out.writeInt32LE(route, FRAME_HEADER_SIZE);
  out.set(message, FRAME_HEADER_SIZE + ROUTE_SIZE);
  return out;
}

/** The 8 bytes before a message in a pipe frame (length and route); send the message after it. */
export function hostFrameHeader(route: number, messageLength: number): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + ROUTE_SIZE);
  out.writeInt32LE(ROUTE_SIZE + messageLength, 0);
  out.writeInt32LE(route, FRAME_HEADER_SIZE);
  return out;
}

/** Messages at least this large are written after their header rather than copied behind it. */
export const HOST_COPY_THRESHOLD = 16 * 1024;

/** Splits a pipe frame body into route and message (a view, no copy). */
export function splitHostFrame(body: Buffer): { route: number; message: Buffer } {
  if (body.length < ROUTE_SIZE) return { route: -1, message: body.subarray(0, 0) };
  return { route: body.readInt32LE(0), message: body.subarray(ROUTE_SIZE) };
}

export function encodeControl(command: number, token: number, body?: Uint8Array): Buffer {
  const w = new BinaryWriter(6 + (body?.length ?? 0)).u8(HOST_CONTROL).i32(token).u8(command);
  if (body) w.raw(body);
  return w.toBuffer();
}
