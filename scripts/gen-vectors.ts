/**
 * Writes spec/vectors.json: byte-exact examples of our reading of the
 * protocol. Run with `node --import tsx scripts/gen-vectors.ts` after a
 * deliberate wire change, review the diff by hand, and commit it; the test
 * suite checks every vector in both directions.
 */
import { writeFileSync } from 'node:fs';
import {
  AesFrameEncoder,
  ErrorKind,
  encodeAgentReply,
  encodeClientHello,
  encodeError,
  encodeEvent,
  encodePlainFrame,
  encodeRequest,
  encodeResponse,
  encodeResult,
  encodeValue,
  Mode,
  PROTOCOL_VERSION,
} from '../src/protocol/index.js';
import type { Schema } from '../src/protocol/schema.js';
import { fromJson, SCHEMAS, toJson } from '../test/protocol/vector-json.js';

type V = Record<string, unknown>;
const vectors: V[] = [];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const add = (v: V) => vectors.push(v);

function value(name: string, schema: keyof typeof SCHEMAS, json: unknown) {
  const s: Schema = SCHEMAS[schema]!;
  add({
    name: `value.${name}`,
    kind: 'value',
    schema,
    value: json,
    hex: hex(encodeValue(s, fromJson(json))),
  });
}
value('u8.max', 'u8', 255);
value('bool.true', 'bool', true);
value('bool.false', 'bool', false);
value('i32.minus-one', 'i32', -1);
value('i32.min', 'i32', -2147483648);
value('i64.max-safe', 'i64', 9007199254740991);
value('i64.minus-two', 'i64', -2);
value('string.empty', 'string', '');
value('string.ascii', 'string', 'hello');
value('string.utf8', 'string', 'héllo ✓ 𝄞');
value('string.len128', 'string', 'a'.repeat(128));
value('string.len16384', 'string', 'b'.repeat(16384));
value('bytes.empty', 'bytes', { $hex: '' });
value('bytes.three', 'bytes', { $hex: '010203' });
value('guid.protocol-order', 'guid', '00112233-4455-6677-8899-aabbccddeeff');
value('datetime.unix-epoch', 'datetime', { $bigint: '621355968000000000' });
value('datetime.min', 'datetime', { $bigint: '0' });
value('datetime.max', 'datetime', { $bigint: '3155378975999999999' });
value('nullable-i32.null', 'nullable<i32>', null);
value('nullable-i32.seven', 'nullable<i32>', 7);
value('string-array.two', 'string[]', ['a', 'bc']);
value('string-map.one', 'map<string>', { PATH: '/bin' });

add({
  name: 'handshake.client.new',
  kind: 'clientHello',
  value: { version: PROTOCOL_VERSION, sessionId: 0 },
  hex: hex(encodeClientHello({ sessionId: 0 })),
});
add({
  name: 'handshake.client.resume',
  kind: 'clientHello',
  value: { version: PROTOCOL_VERSION, sessionId: 305419896 },
  hex: hex(encodeClientHello({ sessionId: 305419896 })),
});
add({
  name: 'handshake.client.minor',
  kind: 'clientHello',
  value: { version: 0x00010003, sessionId: 1 },
  hex: hex(encodeClientHello({ version: 0x00010003, sessionId: 1 })),
});
for (const [mode, label] of [
  [Mode.None, 'none'],
  [Mode.Tls, 'tls'],
  [Mode.Aes, 'aes'],
] as const) {
  const v = { mode, version: PROTOCOL_VERSION, sessionId: 2147483647 };
  add({ name: `handshake.reply.${label}`, kind: 'agentReply', value: v, hex: hex(encodeAgentReply(v)) });
}

{
  const ping = encodeRequest(0, 1, 'Ping', {});
  add({ name: 'frame.plain.ping', kind: 'plainFrame', message: hex(ping), hex: hex(encodePlainFrame(ping)) });
}
const key256 = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const key128 = Buffer.from('2b7e151628aed2a6abf7158809cf4f3c', 'hex');
const iv0 = Buffer.from('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff', 'hex');
const iv1 = Buffer.from('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf', 'hex');
const iv2 = Buffer.from('b0b1b2b3b4b5b6b7b8b9babbbcbdbebf', 'hex');
{
  const enc = new AesFrameEncoder(key256, iv0);
  const m1 = encodeRequest(0, 1, 'Ping', {});
  const m2 = encodeRequest(1, 2, 'FileExists', { path: '/tmp/a' });
  add({
    name: 'frame.aes256.chain',
    kind: 'aesFrames',
    key: hex(key256),
    iv: hex(iv0),
    frames: [
      { nextIv: hex(iv1), message: hex(m1), hex: hex(enc.encode(m1, iv1)) },
      { nextIv: hex(iv2), message: hex(m2), hex: hex(enc.encode(m2, iv2)) },
    ],
  });
  const enc2 = new AesFrameEncoder(key128, iv0);
  const m3 = Buffer.alloc(0);
  add({
    name: 'frame.aes128.empty-message',
    kind: 'aesFrames',
    key: hex(key128),
    iv: hex(iv0),
    frames: [{ nextIv: hex(iv1), message: hex(m3), hex: hex(enc2.encode(m3, iv1)) }],
  });
}

function request(name: string, agentType: number, token: number, command: string, args: unknown) {
  const h = encodeRequest(agentType, token, command as any, fromJson(args) as any);
  add({ name: `request.${name}`, kind: 'request', agentType, token, command, args, hex: hex(h) });
}
function result(name: string, command: string, json: unknown) {
  add({
    name: `result.${name}`,
    kind: 'result',
    command,
    value: json,
    hex: hex(encodeResult(command as any, fromJson(json) as any)),
  });
}
request('ping', 0, 1, 'Ping', {});
request('get-agent-info', 0, 2, 'GetAgentInfo', {});
request('get-agent-root-path', 0, 3, 'GetAgentRootPath', { agentType: 2 });
request('close-session', 0, 4, 'CloseSession', {});
request('update-agent', 0, 5, 'UpdateAgent', {
  instance: 'bm1',
  product: 1,
  files: [{ name: 'Ext.dll', data: { $hex: 'cafe' } }],
});
request('file-exists', 1, 10, 'FileExists', { path: 'C:\\x\\y.txt' });
request('list-directory', 2, 11, 'ListDirectory', {
  path: '/srv',
  recursive: true,
  include: ['**/*.js'],
  exclude: ['node_modules/**'],
});
request('write-all-bytes', 1, 12, 'WriteAllBytes', {
  path: 'a.bin',
  data: { $hex: '00ff' },
  mode: 420,
  lastWriteTime: null,
});
request('open-file', 1, 13, 'OpenFile', { path: '/tmp/big', fileMode: 4, fileAccess: 3 });
request('read-file', 1, 14, 'ReadFile', { handle: 1, position: 4294967296, count: 1048576 });
request('start-process', 3, 15, 'StartProcess', {
  fileName: 'sh',
  arguments: ['-c', 'echo hi'],
  workingDirectory: '/tmp',
  environment: { A: '1' },
  flags: 1,
});
request('write-stdin', 3, 16, 'WriteStdin', { process: 15, data: { $hex: '68690a' }, close: true });
request('terminate-process', 3, 17, 'TerminateProcess', { process: 15, entireTree: true });
request('cancel', 1, 18, 'Cancel', { token: 15 });
request('negative-token', 1, -5, 'DeleteFile', { path: 'x' });
result('get-agent-info', 'GetAgentInfo', {
  agentVersion: '0.1.0',
  protocolVersion: PROTOCOL_VERSION,
  hostname: 'web01',
  platform: 2,
  osDescription: 'Linux 6.1',
  architecture: 'x64',
  processorCount: 2,
  directorySeparator: '/',
  maxMessageSize: 16777216,
});
result('get-file-info', 'GetFileInfo', {
  kind: 1,
  size: 5,
  lastWriteTime: { $bigint: '638000000000000000' },
  mode: 420,
});
result('list-directory', 'ListDirectory', {
  entries: [
    { name: 'a/b.txt', kind: 1, size: 3, lastWriteTime: { $bigint: '638000000000000000' }, mode: 384 },
  ],
});
result('start-process', 'StartProcess', { pid: 4242 });
result('list-processes', 'ListProcesses', {
  processes: [{ token: 15, pid: 4242, fileName: 'sh', running: true }],
});
result('read-all-bytes', 'ReadAllBytes', { data: { $hex: '616263' } });

add({
  name: 'reply.response.empty',
  kind: 'reply',
  value: { kind: 'response', agentType: 0, token: 1, body: { $hex: '' } },
  hex: hex(encodeResponse(0, 1, Buffer.alloc(0))),
});
add({
  name: 'reply.response.bool',
  kind: 'reply',
  value: { kind: 'response', agentType: 1, token: 10, body: { $hex: '01' } },
  hex: hex(encodeResponse(1, 10, Buffer.from([1]))),
});
add({
  name: 'reply.error.not-found',
  kind: 'reply',
  value: { kind: 'error', agentType: 1, token: 7, errorKind: ErrorKind.NotFound, message: 'NotFound: /x' },
  hex: hex(encodeError(1, 7, ErrorKind.NotFound, 'NotFound: /x')),
});
add({
  name: 'reply.error.meta-unknown-type',
  kind: 'reply',
  value: {
    kind: 'error',
    agentType: 9,
    token: 3,
    errorKind: ErrorKind.UnknownAgentType,
    message: 'unknown agent type 9',
  },
  hex: hex(encodeError(9, 3, ErrorKind.UnknownAgentType, 'unknown agent type 9')),
});
add({
  name: 'reply.event.stdout',
  kind: 'event',
  agentType: 3,
  token: 15,
  event: 'Stdout',
  value: { data: { $hex: '68690a' } },
  hex: hex(encodeEvent(3, 15, 'Stdout', { data: Buffer.from('hi\n') })),
});
add({
  name: 'reply.event.exited-code',
  kind: 'event',
  agentType: 3,
  token: 15,
  event: 'Exited',
  value: { exitCode: 0, signal: null },
  hex: hex(encodeEvent(3, 15, 'Exited', { exitCode: 0, signal: null })),
});
add({
  name: 'reply.event.exited-signal',
  kind: 'event',
  agentType: 3,
  token: 15,
  event: 'Exited',
  value: { exitCode: null, signal: 'SIGKILL' },
  hex: hex(encodeEvent(3, 15, 'Exited', { exitCode: null, signal: 'SIGKILL' })),
});

// Rejections: every one must raise ProtocolError with this code.
const reject = (name: string, kind: string, h: string, error: string, extra: V = {}) =>
  add({ name: `reject.${name}`, kind, hex: h, error, ...extra });
reject('string.varint-six-bytes', 'value', '8080808080' + '01', 'VARINT_OVERFLOW', { schema: 'string' });
reject('string.varint-over-int32', 'value', 'ffffffff0f', 'VARINT_OVERFLOW', { schema: 'string' });
reject('string.truncated', 'value', '0561626364', 'TRUNCATED', { schema: 'string' });
reject('string.bad-utf8', 'value', '02c328', 'BAD_UTF8', { schema: 'string' });
reject('string.overlong-utf8', 'value', '02c0af', 'BAD_UTF8', { schema: 'string' });
reject('bool.two', 'value', '02', 'BAD_BOOL', { schema: 'bool' });
reject('bytes.negative-length', 'value', 'ffffffff', 'NEGATIVE_LENGTH', { schema: 'bytes' });
reject('bytes.length-beyond-input', 'value', 'ffffff7f00', 'TRUNCATED', { schema: 'bytes' });
reject('array.count-beyond-input', 'value', 'ffffff7f', 'TRUNCATED', { schema: 'string[]' });
reject('map.duplicate-key', 'value', '02000000' + '0141' + '0131' + '0141' + '0132', 'BAD_VALUE', {
  schema: 'map<string>',
});
reject('datetime.negative', 'value', 'ffffffffffffffff', 'BAD_VALUE', { schema: 'datetime' });
reject('datetime.beyond-max', 'value', '0040f7352b4fcb2b', 'BAD_VALUE', { schema: 'datetime' });
reject('i64.beyond-safe-integer', 'value', '0000000000002000', 'BAD_VALUE', { schema: 'i64' });
reject('handshake.bad-guid', 'clientHello', '00'.repeat(16) + '00000100' + '00000000', 'BAD_MAGIC');
reject(
  'handshake.bad-version',
  'clientHello',
  hex(encodeClientHello()).slice(0, 32) + '00000200' + '00000000',
  'BAD_VERSION',
);
reject('handshake.short', 'clientHello', hex(encodeClientHello()).slice(0, 40), 'TRUNCATED');
reject('handshake.reply.bad-mode', 'agentReply', '03' + '00000100' + '01000000', 'BAD_MODE');
reject('handshake.reply.zero-session', 'agentReply', '00' + '00000100' + '00000000', 'BAD_VALUE');
reject('frame.zero-length', 'plainFrame', '00000000', 'BAD_VALUE');
reject('frame.negative-length', 'plainFrame', 'ffffffff', 'BAD_VALUE');
reject('frame.over-limit', 'plainFrame', '01000001', 'LENGTH_LIMIT');
reject('frame.aes.not-block-multiple', 'aesFrames', '21000000' + '00'.repeat(33), 'DECRYPT_FAILED', {
  key: hex(key256),
  iv: hex(iv0),
});
{
  const chain = vectors.find((v) => v.name === 'frame.aes256.chain')!.frames as V[];
  reject('frame.aes.wrong-key', 'aesFrames', chain[0]!.hex as string, 'DECRYPT_FAILED', {
    key: hex(Buffer.alloc(32, 7)),
    iv: hex(iv0),
  });
}
reject('request.trailing-bytes', 'request', hex(encodeRequest(0, 1, 'Ping', {})) + '00', 'TRAILING_BYTES');
reject('request.unknown-command', 'request', '00' + '01000000' + 'fe', 'UNKNOWN_COMMAND');
reject('request.truncated-header', 'request', '000100', 'TRUNCATED');
reject('reply.unknown-kind', 'reply', '00' + '01000000' + '07', 'UNKNOWN_KIND');
reject('reply.unknown-event', 'reply', '03' + '0f000000' + '02' + '09', 'UNKNOWN_EVENT');
reject('reply.error-truncated', 'reply', '01' + '07000000' + '01' + '0100', 'TRUNCATED');

const out = {
  description:
    'Outpost\'s byte-exact vectors for the Inedo Agent protocol v1 as documented in docs/PROTOCOL.md. Values: {"$hex":…} are bytes, {"$bigint":…} are int64/ticks. Every reject.* vector must raise ProtocolError with `error` as its code.',
  count: vectors.length,
  vectors: vectors.map((v) => JSON.parse(JSON.stringify(v, (_k, x) => toJson(x)))),
};
writeFileSync(new URL('../spec/vectors.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${vectors.length} vectors`);
