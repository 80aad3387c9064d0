/**
 * The handshake (PROTOCOL.md §2).
 *
 * Client → agent, 24 bytes:
 *   16  protocol GUID (.NET byte order)
 *    4  int32 version, (major << 16) | minor
 *    4  int32 session ID to resume, 0 for a new session
 * Agent → client, 9 bytes:
 *    1  mode: 0 none, 1 TLS, 2 AES
 *    4  int32 agent version
 *    4  int32 granted session ID (positive)
 * In mode 2 the reply is followed by the 16-byte handshake IV.
 */
import { BinaryReader, BinaryWriter, guidToBytes } from './binary.js';
import {
  AES_IV_SIZE,
  AGENT_REPLY_SIZE,
  CLIENT_HELLO_SIZE,
  Mode,
  PROTOCOL_GUID,
  PROTOCOL_MAJOR,
  PROTOCOL_VERSION,
  unpackVersion,
} from './constants.js';
import { ProtocolError } from './errors.js';

const GUID_BYTES = guidToBytes(PROTOCOL_GUID);

export interface ClientHello {
  version: number;
  sessionId: number;
}

export interface AgentReply {
  mode: Mode;
  version: number;
  sessionId: number;
}

export function encodeClientHello(hello: Partial<ClientHello> = {}): Buffer {
  const sessionId = hello.sessionId ?? 0;
  if (!Number.isInteger(sessionId) || sessionId < 0 || sessionId > 0x7fffffff)
    throw new ProtocolError('BAD_VALUE', `session ID must be 0 or a positive int32, got ${sessionId}`);
  const w = new BinaryWriter(CLIENT_HELLO_SIZE);
  w.raw(GUID_BYTES)
    .i32(hello.version ?? PROTOCOL_VERSION)
    .i32(sessionId);
  return w.toBuffer();
}

/** True when the bytes seen so far could still be a client hello (GUID prefix check). */
export function isHelloPrefix(prefix: Uint8Array): boolean {
  const n = Math.min(prefix.length, GUID_BYTES.length);
  for (let i = 0; i < n; i++) if (prefix[i] !== GUID_BYTES[i]) return false;
  return true;
}

export function decodeClientHello(data: Uint8Array): ClientHello {
  if (data.length !== CLIENT_HELLO_SIZE)
    throw new ProtocolError('TRUNCATED', `client hello is ${CLIENT_HELLO_SIZE} bytes, got ${data.length}`);
  if (!isHelloPrefix(data)) throw new ProtocolError('BAD_MAGIC', 'not the Inedo Agent protocol GUID');
  const r = new BinaryReader(data);
  r.raw(16);
  const version = r.i32();
  const sessionId = r.i32();
  if (unpackVersion(version).major !== PROTOCOL_MAJOR || version < 0)
    throw new ProtocolError('BAD_VERSION', `unsupported protocol version 0x${(version >>> 0).toString(16)}`);
  if (sessionId < 0) throw new ProtocolError('BAD_VALUE', `negative session ID ${sessionId}`);
  return { version, sessionId };
}

export function encodeAgentReply(reply: AgentReply): Buffer {
  if (reply.sessionId <= 0) throw new ProtocolError('BAD_VALUE', 'granted session ID must be positive');
  const w = new BinaryWriter(AGENT_REPLY_SIZE);
  w.u8(reply.mode).i32(reply.version).i32(reply.sessionId);
  return w.toBuffer();
}

export function decodeAgentReply(data: Uint8Array): AgentReply {
  if (data.length !== AGENT_REPLY_SIZE)
    throw new ProtocolError('TRUNCATED', `agent reply is ${AGENT_REPLY_SIZE} bytes, got ${data.length}`);
  const r = new BinaryReader(data);
  const mode = r.u8();
  if (mode !== Mode.None && mode !== Mode.Tls && mode !== Mode.Aes)
    throw new ProtocolError('BAD_MODE', `unknown encryption mode ${mode}`);
  const version = r.i32();
  const sessionId = r.i32();
  if (version < 0 || unpackVersion(version).major !== PROTOCOL_MAJOR)
    throw new ProtocolError('BAD_VERSION', `unsupported agent version 0x${(version >>> 0).toString(16)}`);
  if (sessionId <= 0) throw new ProtocolError('BAD_VALUE', `granted session ID ${sessionId} is not positive`);
  return { mode, version, sessionId };
}

export function decodeHandshakeIv(data: Uint8Array): Buffer {
  if (data.length !== AES_IV_SIZE)
    throw new ProtocolError('TRUNCATED', `handshake IV is ${AES_IV_SIZE} bytes`);
  return Buffer.from(data);
}
