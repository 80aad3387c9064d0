/**
 * The contract's vectors (spec/contract-vectors.json, byte for byte the
 * contract's vectors.json), both ways: encoding gives exactly the bytes,
 * decoding the bytes gives the fields, and every reject.* is refused with the
 * typed ProtocolError. Every vector must have a check here: a vector without
 * one fails the suite, so a new contract vector cannot pass unnoticed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  AGENT_HEADER_SIZE,
  BinaryReader,
  BinaryWriter,
  bytesToGuid,
  CLIENT_HEADER_SIZE,
  dateToTicks,
  decodeAgentMessage,
  decodeAgentReply,
  decodeClientHello,
  decodeClientMessage,
  decodeEventBody,
  decodeMetaArgs,
  decodeMetaError,
  decodeMetaResult,
  decodeOutboundHello,
  decodeProductArgs,
  decodeReply,
  decodeResult,
  encodeAgentReply,
  encodeClientHello,
  encodeError,
  encodeEvent,
  encodeMetaError,
  encodeMetaReply,
  encodeMetaRequest,
  encodeOutboundHello,
  encodePlainFrame,
  encodeProductRequest,
  encodeResponse,
  FILE_ENTRY,
  FrameDecoder,
  formatVersion,
  guidToBytes,
  Mode,
  map,
  nullable,
  PRODUCT_COMMANDS,
  ProtocolError,
  type ProtocolErrorCode,
  parseVersion,
  readToken,
  readValue,
  ticksToDate,
  writeValue,
} from '../../src/protocol/index.js';
import { array } from '../../src/protocol/schema.js';

const FILE = new URL('../../spec/contract-vectors.json', import.meta.url);
const SHA256 = 'ccbb101d720307b521e9f1b4c4323124c9bad31299c8beba404817b1d49b2f0d';

interface Vector {
  name: string;
  description: string;
  fields?: Record<string, unknown>;
  hex: string;
}
const raw = readFileSync(FILE);
const vectors = (JSON.parse(raw.toString('utf8')) as { vectors: Vector[] }).vectors;
const unhex = (h: string) => Buffer.from(h, 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const f = (v: Vector) => (v.fields ?? {}) as Record<string, any>;

function rejects(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (err: unknown) => err instanceof ProtocolError && err.code === code);
}
/** Decodes one frame with a fresh decoder, fed a byte at a time and then whole. */
function decodeFrames(decoder: () => FrameDecoder, bytes: Buffer): Buffer[] {
  const whole = decoder().push(bytes);
  const d = decoder();
  const split: Buffer[] = [];
  for (const b of bytes) split.push(...d.push(Buffer.from([b])).map((m) => Buffer.from(m)));
  assert.deepEqual(split.map(hex), whole.map(hex), 'byte-at-a-time decoding agrees');
  return whole;
}
const plainClient = () => new FrameDecoder(64 * 1024 * 1024, CLIENT_HEADER_SIZE);
const plainAgent = () => new FrameDecoder(64 * 1024 * 1024, AGENT_HEADER_SIZE);
function oneClientMessage(bytes: Buffer) {
  const frames = decodeFrames(plainClient, bytes);
  assert.equal(frames.length, 1);
  return decodeClientMessage(frames[0]!);
}
function oneAgentMessage(bytes: Buffer) {
  const frames = decodeFrames(plainAgent, bytes);
  assert.equal(frames.length, 1);
  return frames[0]!;
}
const clientFrame = (m: Buffer) => encodePlainFrame(m, CLIENT_HEADER_SIZE);
const agentFrame = (m: Buffer) => encodePlainFrame(m, AGENT_HEADER_SIZE);
const value = (write: (w: BinaryWriter) => void) => {
  const w = new BinaryWriter(16);
  write(w);
  return w.toBuffer();
};
const ENV = { PATH: '/usr/bin', LANG: 'C.UTF-8' };
const ENTRY = {
  fullPath: '/srv/app/web.config',
  isDirectory: false,
  size: 1234,
  lastWriteUtc: dateToTicks(1795437296789),
  mode: 0o100644,
};

/** One check per vector name (or name prefix ending in '.'). Each asserts both directions. */
const checks: Record<string, (v: Vector, bytes: Buffer) => void> = {
  'guid.protocol-id'(v, b) {
    assert.equal(hex(guidToBytes(f(v).guid)), v.hex);
    assert.equal(bytesToGuid(b).toUpperCase(), f(v).guid);
  },
  'handshake.client.'(v, b) {
    assert.equal(hex(encodeClientHello({ version: f(v).version, sessionId: f(v).sessionId })), v.hex);
    assert.deepEqual(decodeClientHello(b), { version: f(v).version, sessionId: f(v).sessionId });
  },
  'handshake.reply.'(v, b) {
    const fields = f(v);
    assert.equal(parseVersion(fields.version), fields.versionInt32);
    assert.equal(formatVersion(fields.versionInt32), fields.version);
    const iv = fields.iv ? unhex(fields.iv) : undefined;
    const reply = {
      mode: fields.mode,
      ...(iv ? { iv } : {}),
      sessionId: fields.sessionId,
      version: fields.versionInt32,
    };
    assert.equal(hex(encodeAgentReply(reply)), v.hex);
    assert.deepEqual(decodeAgentReply(b), reply);
    assert.equal(b.length, fields.mode === Mode.Aes ? 25 : 9);
  },
  'varint.'(v, b) {
    assert.equal(hex(value((w) => w.varint(f(v).value))), v.hex);
    const r = new BinaryReader(b);
    assert.equal(r.varint(), f(v).value);
    r.end();
  },
  'string.'(v, b) {
    if (v.name === 'string.varint-6-bytes') return;
    assert.equal(hex(value((w) => w.string(f(v).value))), v.hex);
    const r = new BinaryReader(b);
    assert.equal(r.string(), f(v).value);
    r.end();
  },
  'datetime.'(v, b) {
    const ticks = BigInt(f(v).ticks);
    assert.equal(dateToTicks(f(v).unixMs), ticks);
    assert.equal(hex(value((w) => w.datetime(ticks))), v.hex);
    const r = new BinaryReader(b);
    const t = r.datetime();
    assert.equal(t, ticks);
    assert.equal(ticksToDate(t).getTime(), f(v).unixMs);
  },
  'nullable.string.'(v, b) {
    const expected = v.name.endsWith('.value') ? f(v).value : null;
    assert.equal(hex(value((w) => writeValue(w, nullable('string'), expected))), v.hex);
    assert.equal(readValue(new BinaryReader(b), nullable('string')), expected);
  },
  'map.two'(v, b) {
    assert.equal(hex(value((w) => writeValue(w, map('string'), ENV))), v.hex);
    const decoded = readValue(new BinaryReader(b), map('string')) as Record<string, string>;
    assert.deepEqual(Object.entries(decoded), Object.entries(ENV), 'keys in order');
  },
  'array-string.two'(v, b) {
    const items = ['*.log', 'bin/**'];
    assert.equal(hex(value((w) => writeValue(w, array('string'), items))), v.hex);
    assert.deepEqual(readValue(new BinaryReader(b), array('string')), items);
  },
  'frame.plain.client.file-exists'(v, b) {
    const { agentType, command, token, path } = f(v);
    assert.equal(hex(clientFrame(encodeProductRequest(agentType, 'FileExists', token, { path }))), v.hex);
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command, readToken(m.data)], [agentType, command, token]);
    assert.deepEqual(decodeProductArgs('FileExists', m.data), { path });
  },
  'frame.plain.server.response-true'(v, b) {
    assert.equal(hex(agentFrame(encodeResponse(f(v).token, 'FileExists', { exists: true }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.equal(r.kind, 'response');
    assert.ok(r.kind === 'response');
    assert.equal(r.token, f(v).token);
    assert.deepEqual(decodeResult('FileExists', r.body), { exists: true });
  },
  'frame.plain.server.error'(v, b) {
    const { token, kind, message } = f(v);
    assert.equal(hex(agentFrame(encodeError(token, kind, message, null))), v.hex);
    assert.deepEqual(decodeReply(oneAgentMessage(b)), {
      kind: 'error',
      token,
      errorKind: kind,
      message,
      detail: null,
    });
  },
  'frame.plain.client.meta-ping'(v, b) {
    assert.equal(hex(clientFrame(encodeMetaRequest('Ping', { token: f(v).token }))), v.hex);
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command], [f(v).agentType, f(v).command]);
    assert.deepEqual(decodeMetaArgs('Ping', m.data), { token: f(v).token });
  },
  'frame.plain.server.meta-pong'(v, b) {
    assert.equal(hex(agentFrame(encodeMetaReply('Ping', { token: f(v).token }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'meta');
    assert.equal(r.command, f(v).command);
    assert.deepEqual(decodeMetaResult('Ping', r.body), { token: f(v).token });
  },
  'frame.plain.client.meta-rootpath'(v, b) {
    assert.equal(
      hex(clientFrame(encodeMetaRequest('GetAgentRootPath', { agentType: f(v).targetType }))),
      v.hex,
    );
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command], [f(v).agentType, f(v).command]);
    assert.deepEqual(decodeMetaArgs('GetAgentRootPath', m.data), { agentType: f(v).targetType });
  },
  'frame.plain.server.meta-rootpath'(v, b) {
    const path = '/var/lib/outpost/BuildMaster';
    assert.equal(hex(agentFrame(encodeMetaReply('GetAgentRootPath', { path }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'meta');
    assert.equal(r.command, f(v).command);
    assert.deepEqual(decodeMetaResult('GetAgentRootPath', r.body), { path });
  },
  'frame.plain.server.meta-error'(v, b) {
    const message = 'unknown meta command 77';
    assert.equal(hex(agentFrame(encodeMetaError(77, message))), v.hex);
    const m = decodeAgentMessage(oneAgentMessage(b));
    assert.equal(m.command, f(v).command);
    assert.deepEqual(decodeMetaError(m.data), { requestCommand: 77, message });
    assert.deepEqual(decodeReply(oneAgentMessage(b)), { kind: 'meta-error', requestCommand: 77, message });
  },
  'frame.plain.client.empty-data'(v, b) {
    assert.equal(hex(clientFrame(encodeMetaRequest('GetAgentInfo', {}))), v.hex);
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command, m.data.length], [f(v).agentType, f(v).command, 0]);
  },
  'payload.file-entry'(v, b) {
    const fields = f(v);
    const entry = { ...ENTRY, lastWriteUtc: dateToTicks(fields.unixMs) };
    assert.deepEqual(
      [entry.fullPath, entry.isDirectory, entry.size, entry.mode],
      [fields.fullPath, fields.isDirectory, fields.size, fields.mode],
    );
    assert.equal(hex(value((w) => writeValue(w, FILE_ENTRY, entry))), v.hex);
    assert.deepEqual(readValue(new BinaryReader(b), FILE_ENTRY), entry);
  },
  'payload.get-file-info.reply'(v, b) {
    // The Response's data: token 5, then the result.
    const response = encodeResponse(5, 'GetFileInfo', { entry: ENTRY });
    assert.equal(hex(response.subarray(AGENT_HEADER_SIZE)), v.hex);
    const r = decodeReply(Buffer.concat([response.subarray(0, AGENT_HEADER_SIZE), b]));
    assert.ok(r.kind === 'response');
    assert.equal(r.token, 5);
    assert.deepEqual(decodeResult('GetFileInfo', r.body), { entry: ENTRY });
  },
  'frame.plain.client.start-process'(v, b) {
    const args = {
      fileName: '/bin/sh',
      args: ['-c', 'echo hi; exit 3'],
      workingDirectory: '/tmp',
      environment: { FOO: 'bar' },
      flags: 1,
    };
    assert.equal(
      hex(clientFrame(encodeProductRequest(f(v).agentType, 'StartProcess', f(v).token, args))),
      v.hex,
    );
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command, readToken(m.data)], [f(v).agentType, f(v).command, f(v).token]);
    assert.deepEqual(decodeProductArgs('StartProcess', m.data), args);
  },
  'frame.plain.server.process-started'(v, b) {
    assert.equal(hex(agentFrame(encodeResponse(11, 'StartProcess', { osProcessId: 4242 }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'response');
    assert.equal(r.token, 11);
    assert.deepEqual(decodeResult('StartProcess', r.body), { osProcessId: 4242 });
  },
  'frame.plain.server.stdout-event'(v, b) {
    assert.equal(hex(agentFrame(encodeEvent(11, 'Stdout', { data: Buffer.from('hi\n') }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'event');
    assert.deepEqual([r.token, r.event], [11, 1]);
    assert.equal(decodeEventBody('Stdout', r.body).data.toString(), 'hi\n');
  },
  'frame.plain.server.exited-event'(v, b) {
    assert.equal(hex(agentFrame(encodeEvent(11, 'Exited', { exitCode: 3, signal: null }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'event');
    assert.deepEqual([r.token, r.event], [11, 3]);
    assert.deepEqual(decodeEventBody('Exited', r.body), { exitCode: 3, signal: null });
  },
  'frame.plain.server.exited-signal'(v, b) {
    assert.equal(hex(agentFrame(encodeEvent(12, 'Exited', { exitCode: -1, signal: 'SIGTERM' }))), v.hex);
    const r = decodeReply(oneAgentMessage(b));
    assert.ok(r.kind === 'event');
    assert.deepEqual([r.token, r.event], [12, 3]);
    assert.deepEqual(decodeEventBody('Exited', r.body), { exitCode: -1, signal: 'SIGTERM' });
  },
  'frame.plain.client.write-all-bytes'(v, b) {
    const args = {
      path: '/tmp/a.txt',
      contents: Buffer.from('hello'),
      lastWriteUtc: dateToTicks(0),
      mode: 0o644,
    };
    assert.equal(hex(clientFrame(encodeProductRequest(1, 'WriteAllBytes', 3, args))), v.hex);
    const m = oneClientMessage(b);
    assert.deepEqual(
      [m.agentType, m.command, readToken(m.data)],
      [1, PRODUCT_COMMANDS.WriteAllBytes.code, 3],
    );
    assert.deepEqual(decodeProductArgs('WriteAllBytes', m.data), args);
  },
  'frame.plain.client.update-agent'(v, b) {
    const args = {
      targetType: 1,
      binaries: [
        { fileName: 'hello.js', lastWriteUtc: dateToTicks(0), contents: Buffer.from('export {}\n') },
      ],
      extensions: [],
    };
    assert.equal(hex(clientFrame(encodeMetaRequest('UpdateAgent', args))), v.hex);
    const m = oneClientMessage(b);
    assert.deepEqual([m.agentType, m.command], [0, 1]);
    assert.deepEqual(decodeMetaArgs('UpdateAgent', m.data), args);
  },
  'outbound.hello'(v, b) {
    assert.equal(hex(encodeOutboundHello(f(v).key)), v.hex);
    assert.equal(decodeOutboundHello(b), f(v).key);
  },
  'frame.aes'(v, b) {
    const { key, iv, nextIV, agentType, command, dataHex } = f(v);
    const client = agentType !== undefined;
    const message = client
      ? value((w) => w.u8(agentType).i32(command).raw(unhex(dataHex)))
      : value((w) => w.i32(command).raw(unhex(dataHex)));
    const encoder = new AesFrameEncoder(unhex(key), unhex(iv));
    assert.equal(hex(encoder.encode(message, unhex(nextIV))), v.hex);
    const headerSize = client ? CLIENT_HEADER_SIZE : AGENT_HEADER_SIZE;
    const frames = decodeFrames(() => new AesFrameDecoder(unhex(key), unhex(iv), { headerSize }), b);
    assert.equal(frames.length, 1);
    assert.equal(hex(frames[0]!), hex(message));
    if (client) {
      const m = decodeClientMessage(frames[0]!);
      assert.deepEqual([m.agentType, m.command, hex(m.data)], [agentType, command, dataHex]);
    } else {
      const m = decodeAgentMessage(frames[0]!);
      assert.deepEqual([m.command, hex(m.data)], [command, dataHex]);
    }
  },
  'reject.handshake.bad-guid'(_v, b) {
    rejects(() => decodeClientHello(b), 'BAD_MAGIC');
  },
  'reject.handshake.bad-version'(_v, b) {
    rejects(() => decodeClientHello(b), 'BAD_VERSION');
  },
  'reject.frame.negative-length'(_v, b) {
    rejects(() => plainClient().push(b), 'NEGATIVE_LENGTH');
    const d = plainClient();
    rejects(() => {
      for (const x of b) d.push(Buffer.from([x]));
    }, 'NEGATIVE_LENGTH');
  },
  'reject.aes.'(v, b) {
    const key = f(v).key ? unhex(f(v).key) : Buffer.alloc(32, 1);
    const iv = f(v).iv ? unhex(f(v).iv) : Buffer.alloc(16, 2);
    rejects(() => new AesFrameDecoder(key, iv, { headerSize: CLIENT_HEADER_SIZE }).push(b), 'DECRYPT_FAILED');
  },
  'reject.string.varint-6-bytes'(_v, b) {
    rejects(() => new BinaryReader(b).string(), 'VARINT_OVERFLOW');
  },
};

function checkFor(name: string): ((v: Vector, b: Buffer) => void) | undefined {
  if (Object.hasOwn(checks, name)) return checks[name];
  const prefix = Object.keys(checks)
    .filter((k) => k.endsWith('.') || k === 'frame.aes')
    .filter((k) => name.startsWith(k))
    .sort((a, b) => b.length - a.length)[0];
  return prefix ? checks[prefix] : undefined;
}

test('spec/contract-vectors.json is the contract file, byte for byte', () => {
  assert.equal(createHash('sha256').update(raw).digest('hex'), SHA256);
  const shared = new URL('../../../shared/spec/vectors.json', import.meta.url);
  if (existsSync(shared))
    assert.ok(readFileSync(shared).equals(raw), 'the copy equals ../shared/spec/vectors.json');
  assert.equal(vectors.length, 64);
});

test('every contract vector has a check', () => {
  const missing = vectors.filter((v) => !checkFor(v.name)).map((v) => v.name);
  assert.deepEqual(missing, []);
});

for (const v of vectors) {
  test(`contract vector ${v.name}`, () => {
    const check = checkFor(v.name);
    assert.ok(check, `no check for ${v.name}`);
    check(v, unhex(v.hex));
  });
}
