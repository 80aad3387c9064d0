/**
 * Writes spec/vectors.json: Outpost's own byte-exact examples, beside the
 * contract's (spec/contract-vectors.json, which is never regenerated). They
 * cover what the contract's vectors leave out: every envelope of both
 * directions, AES chains in both roles, the Outpost extensions, and the
 * rejects our decoders raise. Run `node --import tsx scripts/gen-vectors.ts`
 * after a deliberate change, review the diff by hand, and commit it; the
 * suite checks every vector in both directions (test/protocol/vectors.test.ts).
 */
import { writeFileSync } from 'node:fs';
import {
  AesFrameEncoder,
  dateToTicks,
  encodeAgentReply,
  encodeClientHello,
  encodeError,
  encodeEvent,
  encodeMetaError,
  encodeMetaReply,
  encodeMetaRequest,
  encodePlainFrame,
  encodeProductRequest,
  encodeResponse,
  encodeValue,
  Mode,
  type ProductCommand,
  parseVersion,
  SUPPORTED_AGENT_TYPES,
} from '../src/protocol/index.js';
import type { Schema } from '../src/protocol/schema.js';
import { fromJson, SCHEMAS, toJson } from '../test/protocol/vector-json.js';

type V = Record<string, unknown>;
const vectors: V[] = [];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const add = (v: V) => vectors.push(v);
const json = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => toJson(x)));

function value(name: string, schema: keyof typeof SCHEMAS, v: unknown) {
  const s: Schema = SCHEMAS[schema]!;
  add({ name: `value.${name}`, kind: 'value', schema, value: v, hex: hex(encodeValue(s, fromJson(v))) });
}
value('u8.max', 'u8', 255);
value('bool.true', 'bool', true);
value('bool.false', 'bool', false);
value('i32.minus-one', 'i32', -1);
value('i32.min', 'i32', -2147483648);
value('i64.max-safe', 'i64', 9007199254740991);
value('i64.minus-two', 'i64', -2);
value('string.utf8-astral', 'string', 'héllo ✓ 𝄞');
value('string.len16384', 'string', 'b'.repeat(16384));
value('bytes.empty', 'bytes', { $hex: '' });
value('bytes.three', 'bytes', { $hex: '010203' });
value('guid.dotnet-order', 'guid', '00112233-4455-6677-8899-aabbccddeeff');
value('datetime.min', 'datetime', { $bigint: '0' });
value('datetime.max', 'datetime', { $bigint: '3155378975999999999' });
value('nullable-i32.null', 'nullable<i32>', null);
value('nullable-i32.seven', 'nullable<i32>', 7);
value('string-map.empty', 'map<string>', {});

add({
  name: 'handshake.client.max-session',
  kind: 'clientHello',
  value: { version: 1000, sessionId: 2147483647 },
  hex: hex(encodeClientHello({ sessionId: 2147483647 })),
});
add({
  name: 'handshake.client.negative-session',
  kind: 'clientHello',
  value: { version: 1000, sessionId: -5 },
  hex: hex(encodeClientHello({ sessionId: -5 })),
});
{
  const version = parseVersion('0.1.0');
  add({
    name: 'handshake.reply.outpost-0.1.0',
    kind: 'agentReply',
    value: { mode: Mode.None, sessionId: 1234567, version },
    hex: hex(encodeAgentReply({ mode: Mode.None, sessionId: 1234567, version })),
  });
}

/** Product requests and their Responses (Outpost's argument values, both directions). */
function product(name: ProductCommand, agentType: number, token: number, args: unknown, result: unknown) {
  const request = encodeProductRequest(agentType, name, token, fromJson(args) as never);
  add({ name: `request.${name}`, kind: 'request', command: name, agentType, token, args, hex: hex(request) });
  if (result !== undefined) {
    const response = encodeResponse(token, name, fromJson(result) as never);
    add({
      name: `response.${name}`,
      kind: 'response',
      command: name,
      token,
      value: result,
      hex: hex(response),
    });
  }
}
const t0 = { $bigint: dateToTicks(Date.UTC(2026, 11, 1, 10, 0, 0)).toString() };
const entry = { fullPath: '/srv/app/bin', isDirectory: true, size: 0, lastWriteUtc: t0, mode: 0o40755 };
product('GetBaseWorkingDirectory', 1, 1, {}, { path: '/var/lib/outpost/Otter' });
product('DirectoryExists', 3, 2, { path: 'bin' }, { exists: false });
product('GetFileInfo', 1, 3, { path: '/nope' }, { entry: null });
product(
  'ListDirectory',
  2,
  4,
  { path: '/srv/app', recursive: true, include: ['**/*.js'], exclude: ['node_modules/**'] },
  { entries: [entry] },
);
product('CreateDirectory', 1, 5, { path: '/srv/app/logs' }, {});
product('DeleteDirectory', 1, 6, { path: '/srv/app/tmp', recursive: true }, {});
product('Move', 1, 7, { source: 'a.txt', target: 'b/a.txt', overwrite: false }, {});
product('ReadAllBytes', 1, 8, { path: 'a.txt' }, { contents: { $hex: '68690a' } });
product('OpenFile', 1, 9, { path: 'big.bin', fileMode: 4, access: 3 }, { handle: 1 });
product('ReadFile', 1, 10, { handle: 1, position: -1, maxCount: 1048576 }, { data: { $hex: '' } });
product('WriteFile', 1, 11, { handle: 1, position: 4096, data: { $hex: '00ff' } }, {});
product(
  'GetFileHash',
  1,
  12,
  { path: 'a.txt', algorithm: 'sha256' },
  { hash: '98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4' },
);
product('SetMode', 1, 13, { path: 'run.sh', mode: 0o755 }, {});
product('DeleteFiles', 1, 14, { paths: ['a', 'b'] }, {});
product('WriteStdin', 2, 15, { processToken: 11, data: { $hex: '7965730a' }, close: true }, {});
product('TerminateProcess', 2, 16, { processToken: 11, entireTree: true }, {});
product('GetEnvironmentVariable', 1, 17, { name: 'HOME' }, { value: '/root' });
product(
  'ListProcesses',
  1,
  18,
  {},
  { processes: [{ token: 11, pid: 4242, fileName: '/bin/sh', running: true }] },
);
product(
  'ExecuteJob',
  1,
  19,
  { jobType: 'outpost.manifest', payload: { $hex: '7b7d' } },
  { result: { $hex: '5b5d' } },
);
product('Cancel', 1, 20, { targetToken: 19 }, undefined);

add({
  name: 'meta.request.GetAgentInfo',
  kind: 'metaRequest',
  command: 'GetAgentInfo',
  args: {},
  hex: hex(encodeMetaRequest('GetAgentInfo', {})),
});
add({
  name: 'meta.request.CloseSession',
  kind: 'metaRequest',
  command: 'CloseSession',
  args: {},
  hex: hex(encodeMetaRequest('CloseSession', {})),
});
{
  const info = {
    product: 'Outpost',
    version: '0.1.0',
    protocolVersion: 1000,
    hostName: 'web01',
    platform: 'linux',
    osRelease: '6.1.0',
    arch: 'x64',
    processId: 4242,
    uptimeMs: 12345,
    supportedAgentTypes: { $hex: hex(Buffer.from(SUPPORTED_AGENT_TYPES)) },
    encryptionMode: 2,
  };
  add({
    name: 'meta.reply.GetAgentInfo',
    kind: 'metaReply',
    command: 'GetAgentInfo',
    value: info,
    hex: hex(encodeMetaReply('GetAgentInfo', fromJson(info) as never)),
  });
  add({
    name: 'meta.reply.CloseSession',
    kind: 'metaReply',
    command: 'CloseSession',
    value: {},
    hex: hex(encodeMetaReply('CloseSession', {})),
  });
  add({
    name: 'meta.error.unknown-agent-type',
    kind: 'metaError',
    requestCommand: 2,
    message: 'unknown agent type 7: expected 0 (meta), 1 (Otter), 2 (BuildMaster) or 3 (Hedgehog)',
    hex: hex(
      encodeMetaError(
        2,
        'unknown agent type 7: expected 0 (meta), 1 (Otter), 2 (BuildMaster) or 3 (Hedgehog)',
      ),
    ),
  });
}
add({
  name: 'error.with-detail',
  kind: 'error',
  token: 21,
  errorKind: 'AccessDenied',
  message: 'refusing to delete the root /srv',
  detail: 'AllowedRoots entry',
  hex: hex(encodeError(21, 'AccessDenied', 'refusing to delete the root /srv', 'AllowedRoots entry')),
});
add({
  name: 'error.canceled',
  kind: 'error',
  token: 19,
  errorKind: 'Canceled',
  message: 'canceled',
  detail: null,
  hex: hex(encodeError(19, 'Canceled', 'canceled')),
});
add({
  name: 'event.stderr',
  kind: 'event',
  event: 'Stderr',
  token: 11,
  value: { data: { $hex: '6f6f7073' } },
  hex: hex(encodeEvent(11, 'Stderr', { data: Buffer.from('oops') })),
});
add({
  name: 'event.log',
  kind: 'event',
  event: 'Log',
  token: 19,
  value: { level: 2, text: 'disk almost full' },
  hex: hex(encodeEvent(19, 'Log', { level: 2, text: 'disk almost full' })),
});

{
  const ping = encodeMetaRequest('Ping', { token: 7 });
  add({
    name: 'frame.plain.client.ping',
    kind: 'plainFrame',
    role: 'client',
    message: hex(ping),
    hex: hex(encodePlainFrame(ping, 5)),
  });
  const pong = encodeMetaReply('Ping', { token: 7 });
  add({
    name: 'frame.plain.agent.pong',
    kind: 'plainFrame',
    role: 'agent',
    message: hex(pong),
    hex: hex(encodePlainFrame(pong, 4)),
  });
}
const key192 = Buffer.from('8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b', 'hex');
const iv0 = Buffer.from('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff', 'hex');
const ivs = ['a0', 'b0', 'c0'].map((b) => Buffer.alloc(16, Number.parseInt(b, 16)));
{
  const enc = new AesFrameEncoder(key192, iv0);
  const msgs = [
    encodeMetaRequest('Ping', { token: 1 }),
    encodeProductRequest(1, 'FileExists', 2, { path: '/tmp/a' }),
    encodeProductRequest(1, 'ReadAllBytes', 3, { path: 'x'.repeat(40) }),
  ];
  add({
    name: 'frame.aes192.client-chain',
    kind: 'aesFrames',
    role: 'client',
    key: hex(key192),
    iv: hex(iv0),
    frames: msgs.map((m, i) => ({ nextIv: hex(ivs[i]!), message: hex(m), hex: hex(enc.encode(m, ivs[i]!)) })),
  });
  const agentEnc = new AesFrameEncoder(key192, iv0);
  const replies = [encodeMetaReply('Ping', { token: 1 }), encodeResponse(2, 'FileExists', { exists: true })];
  add({
    name: 'frame.aes192.agent-chain',
    kind: 'aesFrames',
    role: 'agent',
    key: hex(key192),
    iv: hex(iv0),
    frames: replies.map((m, i) => ({
      nextIv: hex(ivs[i]!),
      message: hex(m),
      hex: hex(agentEnc.encode(m, ivs[i]!)),
    })),
  });
}

const reject = (name: string, kind: string, h: string, error: string, extra: V = {}) =>
  add({ name: `reject.${name}`, kind, hex: h, error, ...extra });
reject('string.varint-over-int32', 'value', 'ffffffff0f', 'VARINT_OVERFLOW', { schema: 'string' });
reject('string.truncated', 'value', '0561626364', 'TRUNCATED', { schema: 'string' });
reject('string.bad-utf8', 'value', '02c328', 'BAD_UTF8', { schema: 'string' });
reject('string.overlong-utf8', 'value', '02c0af', 'BAD_UTF8', { schema: 'string' });
reject('bytes.negative-length', 'value', 'ffffffff', 'NEGATIVE_LENGTH', { schema: 'bytes' });
reject('bytes.length-beyond-input', 'value', 'ffffff7f00', 'TRUNCATED', { schema: 'bytes' });
reject('array.count-beyond-input', 'value', 'ffffff7f', 'TRUNCATED', { schema: 'string[]' });
reject('map.duplicate-key', 'value', '02000000' + '0141' + '0131' + '0141' + '0132', 'BAD_VALUE', {
  schema: 'map<string>',
});
reject('datetime.negative', 'value', 'ffffffffffffffff', 'BAD_VALUE', { schema: 'datetime' });
reject('datetime.beyond-max', 'value', '0040f7352b4fcb2b', 'BAD_VALUE', { schema: 'datetime' });
reject('i64.beyond-safe-integer', 'value', '0000000000002000', 'BAD_VALUE', { schema: 'i64' });
reject('handshake.short', 'clientHello', hex(encodeClientHello()).slice(0, 40), 'TRUNCATED');
reject(
  'handshake.version-0x10000',
  'clientHello',
  hex(encodeClientHello({ version: 0x10000 })),
  'BAD_VERSION',
);
reject('handshake.reply.bad-mode', 'agentReply', '03' + '01000000' + '00000001', 'BAD_MODE');
reject('handshake.reply.aes-too-short', 'agentReply', '02' + '01000000' + '00000001', 'TRUNCATED');
reject('frame.plain.over-limit', 'plainFrame', '01000001' + '00', 'LENGTH_LIMIT', {
  role: 'client',
  limit: 16777216,
});
reject('frame.aes.too-short', 'aesFrames', '10000000' + '00'.repeat(16), 'DECRYPT_FAILED', {
  role: 'client',
  key: hex(key192),
  iv: hex(iv0),
});
reject('frame.aes.over-limit', 'aesFrames', '40000001', 'DECRYPT_FAILED', {
  role: 'client',
  key: hex(key192),
  iv: hex(iv0),
  limit: 16777216,
});
{
  const frame = new AesFrameEncoder(key192, iv0).encode(encodeMetaRequest('Ping', { token: 1 }), ivs[0]!);
  reject('frame.aes.wrong-key', 'aesFrames', hex(frame), 'DECRYPT_FAILED', {
    role: 'client',
    key: hex(Buffer.alloc(24, 0x42)),
    iv: hex(iv0),
  });
  reject('frame.aes.replayed', 'aesFrames', hex(frame), 'REPLAYED', {
    role: 'client',
    key: hex(key192),
    iv: hex(iv0),
    replayOnSecondConnection: true,
  });
}
reject('reply.unknown-code', 'reply', '4d000000', 'UNKNOWN_COMMAND');
reject('reply.error-truncated', 'reply', '65000000' + '07000000' + '08' + '4e6f74', 'TRUNCATED');

const file = {
  about:
    "Outpost's own byte-exact examples on the contract wire (docs/PROTOCOL.md), beside spec/contract-vectors.json. Generated by scripts/gen-vectors.ts; hex = the exact bytes.",
  count: vectors.length,
  vectors: json(vectors),
};
writeFileSync(new URL('../spec/vectors.json', import.meta.url), `${JSON.stringify(file, null, 1)}\n`);
console.log(`wrote ${vectors.length} vectors`);
