/**
 * Every vector in spec/vectors.json, both directions: encoding gives exactly
 * the hex, decoding the hex gives exactly the fields, and every reject.*
 * vector is refused with the typed ProtocolError and its code. A vector of a
 * kind no handler knows fails the suite.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  BinaryReader,
  type CommandName,
  decodeAgentReply,
  decodeArgs,
  decodeClientHello,
  decodeEventBody,
  decodeReply,
  decodeRequest,
  decodeResult,
  EVENTS,
  type EventName,
  encodeAgentReply,
  encodeClientHello,
  encodeError,
  encodeEvent,
  encodePlainFrame,
  encodeRequest,
  encodeResponse,
  encodeResult,
  encodeValue,
  eventName,
  FrameDecoder,
  ProtocolError,
  readValue,
} from '../../src/protocol/index.js';
import { fromJson, SCHEMAS } from './vector-json.js';

type Vector = Record<string, unknown> & { name: string; kind: string; hex?: string; error?: string };
const unhex = (h: string) => Buffer.from(h, 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** Plain-object view of decoded values (Buffers compared by content). */
const norm = (v: unknown): unknown => {
  if (v instanceof Uint8Array) return { $hex: hex(v) };
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (Array.isArray(v)) return v.map(norm);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
};

function decodeValue(schemaName: string, data: Buffer): unknown {
  const schema = SCHEMAS[schemaName];
  assert.ok(schema, `unknown schema ${schemaName}`);
  const r = new BinaryReader(data);
  const v = readValue(r, schema);
  r.end();
  return v;
}

function decodeAesFrames(v: Vector, data: Buffer): Buffer[] {
  const d = new AesFrameDecoder(unhex(v.key as string), unhex(v.iv as string), 1 << 20);
  return d.push(data);
}

/** Decoder per kind, used by the reject vectors and the accept direction. */
const DECODERS: Record<string, (v: Vector, data: Buffer) => unknown> = {
  value: (v, data) => decodeValue(v.schema as string, data),
  clientHello: (_v, data) => decodeClientHello(data),
  agentReply: (_v, data) => decodeAgentReply(data),
  plainFrame: (_v, data) => new FrameDecoder(1 << 24).push(data),
  aesFrames: decodeAesFrames,
  request: (_v, data) => decodeRequest(data),
  reply: (_v, data) => {
    const r = decodeReply(data);
    if (r.kind === 'event') decodeEventBody(eventName(r.event)!, r.body);
    return r;
  },
};

/** Both directions for each accepting kind. */
const CHECKS: Record<string, (v: Vector) => void> = {
  value(v) {
    const schema = SCHEMAS[v.schema as string]!;
    assert.equal(hex(encodeValue(schema, fromJson(v.value))), v.hex);
    assert.deepEqual(norm(decodeValue(v.schema as string, unhex(v.hex!))), norm(fromJson(v.value)));
  },
  clientHello(v) {
    const value = v.value as { version: number; sessionId: number };
    assert.equal(hex(encodeClientHello(value)), v.hex);
    assert.deepEqual(decodeClientHello(unhex(v.hex!)), value);
  },
  agentReply(v) {
    const value = v.value as { mode: 0 | 1 | 2; version: number; sessionId: number };
    assert.equal(hex(encodeAgentReply(value)), v.hex);
    assert.deepEqual(decodeAgentReply(unhex(v.hex!)), value);
  },
  plainFrame(v) {
    assert.equal(hex(encodePlainFrame(unhex(v.message as string))), v.hex);
    const frames = new FrameDecoder(1 << 24).push(unhex(v.hex!));
    assert.deepEqual(frames.map(hex), [v.message]);
  },
  aesFrames(v) {
    const frames = v.frames as { nextIv: string; message: string; hex: string }[];
    const enc = new AesFrameEncoder(unhex(v.key as string), unhex(v.iv as string));
    for (const f of frames) assert.equal(hex(enc.encode(unhex(f.message), unhex(f.nextIv))), f.hex);
    const got = decodeAesFrames(v, Buffer.concat(frames.map((f) => unhex(f.hex))));
    assert.deepEqual(
      got.map(hex),
      frames.map((f) => f.message),
    );
  },
  request(v) {
    const command = v.command as CommandName;
    const args = fromJson(v.args);
    assert.equal(hex(encodeRequest(v.agentType as number, v.token as number, command, args as any)), v.hex);
    const d = decodeRequest(unhex(v.hex!));
    assert.deepEqual(norm(d), norm({ agentType: v.agentType, token: v.token, name: command, args }));
    assert.deepEqual(norm(decodeArgs(command, unhex(v.hex!).subarray(6))), norm(args));
  },
  result(v) {
    const command = v.command as CommandName;
    assert.equal(hex(encodeResult(command, fromJson(v.value) as any)), v.hex);
    assert.deepEqual(norm(decodeResult(command, unhex(v.hex!))), norm(fromJson(v.value)));
  },
  reply(v) {
    const value = fromJson(v.value) as Record<string, unknown>;
    const encoded =
      value.kind === 'response'
        ? encodeResponse(value.agentType as number, value.token as number, value.body as Buffer)
        : encodeError(
            value.agentType as number,
            value.token as number,
            value.errorKind as number,
            value.message as string,
          );
    assert.equal(hex(encoded), v.hex);
    assert.deepEqual(norm(decodeReply(unhex(v.hex!))), norm(value));
  },
  event(v) {
    const name = v.event as EventName;
    const encoded = encodeEvent(v.agentType as number, v.token as number, name, fromJson(v.value) as any);
    assert.equal(hex(encoded), v.hex);
    const r = decodeReply(unhex(v.hex!));
    assert.equal(r.kind, 'event');
    if (r.kind !== 'event') return;
    assert.equal(r.agentType, v.agentType);
    assert.equal(r.token, v.token);
    assert.equal(r.event, EVENTS[name].code);
    assert.deepEqual(norm(decodeEventBody(name, r.body)), norm(fromJson(v.value)));
  },
};

function runVectorFile(path: string) {
  const file = JSON.parse(readFileSync(path, 'utf8')) as { count?: number; vectors: Vector[] };
  const handled = new Set<string>();
  describe(`vectors in ${path}`, () => {
    test('the file declares its count and names are unique', () => {
      assert.equal(file.vectors.length, file.count);
      assert.equal(new Set(file.vectors.map((v) => v.name)).size, file.vectors.length);
    });
    for (const v of file.vectors) {
      test(v.name, () => {
        if (v.name.startsWith('reject.')) {
          const decode = DECODERS[v.kind];
          assert.ok(decode, `no decoder for reject vector kind ${v.kind}`);
          assert.ok(v.error, 'reject vector without an error code');
          assert.throws(
            () => decode(v, unhex(v.hex!)),
            (err: unknown) => err instanceof ProtocolError && err.code === v.error,
            `${v.name} must raise ProtocolError ${v.error}`,
          );
        } else {
          const check = CHECKS[v.kind];
          assert.ok(check, `no check for vector kind ${v.kind}`);
          check(v);
        }
        handled.add(v.name);
      });
    }
    test('every vector in the file was handled', () => {
      const missed = file.vectors.filter((v) => !handled.has(v.name)).map((v) => v.name);
      assert.deepEqual(missed, []);
    });
  });
}

runVectorFile(new URL('../../spec/vectors.json', import.meta.url).pathname);

// The project's shared contract, when it is present beside the checkout, is
// binding: its vectors must pass too (see docs/PROTOCOL.md, "Provenance").
const shared = new URL('../../../shared/spec/vectors.json', import.meta.url).pathname;
if (existsSync(shared)) runVectorFile(shared);
