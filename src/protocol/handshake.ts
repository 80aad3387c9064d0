/**
 * The handshake (PROTOCOL.md §2).
 *
 * Client → agent, exactly 24 bytes:
 *   16  protocol ID Guid 6CEBD24E-4AF7-4A13-B9AF-81D3DFC644BE (.NET byte order)
 *    4  int32 protocol version, 1000
 *    4  int32 session ID: 0 for a new session, non-zero to resume one
 * Agent → client, 9 bytes (25 in mode 2), always plaintext:
 *    1  mode: 0 none, 1 SSL (TLS), 2 AES
 *   16  AES IV — only in mode 2
 *    4  int32 session ID granted
 *    4  int32 agent version, major<<24 | minor<<16 | build<<8 | revision
 */
import { BinaryReader, BinaryWriter, guidToBytes } from './binary.js';
import {
  AES_IV_SIZE,
  AGENT_REPLY_SIZE,
  AGENT_REPLY_SIZE_AES,
  CLIENT_HELLO_SIZE,
  Mode,
  PROTOCOL_GUID,
  PROTOCOL_VERSION,
} from './constants.js';
import { ProtocolError } from './errors.js';

/** The protocol ID as it travels. */
export const PROTOCOL_GUID_BYTES: Buffer = guidToBytes(PROTOCOL_GUID);

export interface ClientHello {
  version: number;
  sessionId: number;
}

export interface AgentReply {
  mode: Mode;
  /** The IV both AES chains start from; present exactly when mode is 2. */
  iv?: Buffer;
  sessionId: number;
  /** Packed agent version (see `formatVersion`). */
  version: number;
}

export function encodeClientHello(hello: Partial<ClientHello> = {}): Buffer {
  const sessionId = hello.sessionId ?? 0;
  if (!Number.isInteger(sessionId) || sessionId < -0x80000000 || sessionId > 0x7fffffff)
    throw new ProtocolError('BAD_VALUE', `session ID must be an int32, got ${sessionId}`);
  const w = new BinaryWriter(CLIENT_HELLO_SIZE);
  w.raw(PROTOCOL_GUID_BYTES)
    .i32(hello.version ?? PROTOCOL_VERSION)
    .i32(sessionId);
  return w.toBuffer();
}

/** True when the bytes seen so far could still be a client hello (protocol ID prefix check). */
export function isHelloPrefix(prefix: Uint8Array): boolean {
  const n = Math.min(prefix.length, PROTOCOL_GUID_BYTES.length);
  for (let i = 0; i < n; i++) if (prefix[i] !== PROTOCOL_GUID_BYTES[i]) return false;
  return true;
}

/** Reads a 24-byte hello; a wrong protocol ID is BAD_MAGIC, a version other than 1000 BAD_VERSION. */
export function decodeClientHello(data: Uint8Array): ClientHello {
  if (data.length !== CLIENT_HELLO_SIZE)
    throw new ProtocolError('TRUNCATED', `client hello is ${CLIENT_HELLO_SIZE} bytes, got ${data.length}`);
  if (!isHelloPrefix(data)) throw new ProtocolError('BAD_MAGIC', 'not the Inedo Agent protocol ID');
  const r = new BinaryReader(data);
  r.raw(16);
  const version = r.i32();
  const sessionId = r.i32();
  if (version !== PROTOCOL_VERSION)
    throw new ProtocolError(
      'BAD_VERSION',
      `unsupported protocol version ${version} (expected ${PROTOCOL_VERSION})`,
    );
  return { version, sessionId };
}

/** Size of the agent's reply for the mode in its first byte. */
export function agentReplySize(mode: number): number {
  return mode === Mode.Aes ? AGENT_REPLY_SIZE_AES : AGENT_REPLY_SIZE;
}

export function encodeAgentReply(reply: AgentReply): Buffer {
  const aes = reply.mode === Mode.Aes;
  if (aes !== (reply.iv !== undefined))
    throw new ProtocolError('BAD_VALUE', 'the handshake IV is sent in mode 2 and only then');
  if (reply.iv && reply.iv.length !== AES_IV_SIZE)
    throw new ProtocolError('BAD_VALUE', 'IV must be 16 bytes');
  const w = new BinaryWriter(agentReplySize(reply.mode));
  w.u8(reply.mode);
  if (reply.iv) w.raw(reply.iv);
  w.i32(reply.sessionId).i32(reply.version);
  return w.toBuffer();
}

export function decodeAgentReply(data: Uint8Array): AgentReply {
  if (data.length < 1) throw new ProtocolError('TRUNCATED', 'agent reply is empty');
  const mode = data[0]!;
  if (mode !== Mode.None && mode !== Mode.Tls && mode !== Mode.Aes)
    throw new ProtocolError('BAD_MODE', `unknown encryption mode ${mode}`);
  const size = agentReplySize(mode);
  if (data.length !== size)
    throw new ProtocolError('TRUNCATED', `agent reply in mode ${mode} is ${size} bytes, got ${data.length}`);
  const r = new BinaryReader(data);
  r.u8();
  const iv = mode === Mode.Aes ? Buffer.from(r.raw(AES_IV_SIZE)) : undefined;
  const sessionId = r.i32();
  const version = r.i32();
  return iv ? { mode, iv, sessionId, version } : { mode, sessionId, version };
}

/** Outbound mode (§8): what the agent sends first inside TLS to the server it dialed. */
export function encodeOutboundHello(key: string): Buffer {
  const w = new BinaryWriter(CLIENT_HELLO_SIZE + key.length + 5);
  w.raw(PROTOCOL_GUID_BYTES).i32(PROTOCOL_VERSION).string(key);
  return w.toBuffer();
}

/** Reads an outbound hello; returns the key. */
export function decodeOutboundHello(data: Uint8Array): string {
  const r = new BinaryReader(data);
  if (!isHelloPrefix(r.raw(16))) throw new ProtocolError('BAD_MAGIC', 'not the Inedo Agent protocol ID');
  const version = r.i32();
  if (version !== PROTOCOL_VERSION)
    throw new ProtocolError(
      'BAD_VERSION',
      `unsupported protocol version ${version} (expected ${PROTOCOL_VERSION})`,
    );
  const key = r.string();
  r.end();
  return key;
}
