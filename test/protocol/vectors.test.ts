/**
 * Outpost's own vectors (spec/vectors.json, made by scripts/gen-vectors.ts),
 * both directions: encoding gives exactly the hex, decoding the hex gives
 * exactly the values, and every reject.* is refused with its typed
 * ProtocolError. A vector of a kind no check knows fails the suite. The
 * contract's vectors are checked by contract-vectors.test.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  BinaryReader,
  decodeAgentReply,
  decodeClientHello,
  decodeClientMessage,
  decodeEventBody,
  decodeMetaArgs,
  decodeMetaResult,
  decodeProductArgs,
  decodeReply,
  decodeResult,
  EVENTS,
  type EventName,
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
  FrameDecoder,
  META_COMMANDS,
  type MetaCommand,
  PRODUCT_COMMANDS,
  type ProductCommand,
  ProtocolError,
  ReplayCache,
  readToken,
  readValue,
} from '../../src/protocol/index.js';
import { fromJson, SCHEMAS } from './vector-json.js';

type Vector = Record<string, unknown> & { name: string; kind: string; hex: string; error?: string };
const unhex = (h: string) => Buffer.from(h, 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const norm = (v: unknown): unknown => {
  if (v instanceof Uint8Array) return { $hex: hex(v) };
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (Array.isArray(v)) return v.map(norm);
  if (v !== null && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
};
const headerOf = (v: Vector) => ((v.role ?? 'client') === 'client' ? 5 : 4);
const limitOf = (v: Vector) => (v.limit as number | undefined) ?? 1 << 24;
const aesDecoder = (v: Vector, replay?: ReplayCache) =>
  new AesFrameDecoder(unhex(v.key as string), unhex(v.iv as string), {
    maxSize: limitOf(v),
    headerSize: headerOf(v),
    ...(replay ? { replay } : {}),
  });

/** Decoders per kind, for the reject vectors. */
const DECODERS: Record<string, (v: Vector, data: Buffer) => unknown> = {
  value: (v, data) => readValue(new BinaryReader(data), SCHEMAS[v.schema as string]!),
  clientHello: (_v, data) => decodeClientHello(data),
  agentReply: (_v, data) => decodeAgentReply(data),
  plainFrame: (v, data) => new FrameDecoder(limitOf(v), headerOf(v)).push(data),
  aesFrames: (v, data) => {
    if (!v.replayOnSecondConnection) return aesDecoder(v).push(data);
    const cache = new ReplayCache(16);
    aesDecoder(v, cache).push(data);
    return aesDecoder(v, cache).push(data);
  },
  reply: (_v, data) => decodeReply(data),
};

const CHECKS: Record<string, (v: Vector) => void> = {
  value(v) {
    const schema = SCHEMAS[v.schema as string]!;
    assert.equal(hex(encodeValue(schema, fromJson(v.value))), v.hex);
    const r = new BinaryReader(unhex(v.hex));
    assert.deepEqual(norm(readValue(r, schema)), norm(fromJson(v.value)));
    r.end();
  },
  clientHello(v) {
    const value = v.value as { version: number; sessionId: number };
    assert.equal(hex(encodeClientHello(value)), v.hex);
    assert.deepEqual(decodeClientHello(unhex(v.hex)), value);
  },
  agentReply(v) {
    const value = v.value as { mode: 0 | 1 | 2; version: number; sessionId: number };
    assert.equal(hex(encodeAgentReply(value)), v.hex);
    assert.deepEqual(decodeAgentReply(unhex(v.hex)), value);
  },
  request(v) {
    const name = v.command as ProductCommand;
    const args = fromJson(v.args);
    assert.equal(
      hex(encodeProductRequest(v.agentType as number, name, v.token as number, args as never)),
      v.hex,
    );
    const m = decodeClientMessage(unhex(v.hex));
    assert.deepEqual(
      [m.agentType, m.command, readToken(m.data)],
      [v.agentType, PRODUCT_COMMANDS[name].code, v.token],
    );
    assert.deepEqual(norm(decodeProductArgs(name, m.data)), norm(args));
  },
  response(v) {
    const name = v.command as ProductCommand;
    const value = fromJson(v.value);
    assert.equal(hex(encodeResponse(v.token as number, name, value as never)), v.hex);
    const r = decodeReply(unhex(v.hex));
    assert.ok(r.kind === 'response');
    assert.equal(r.token, v.token);
    assert.deepEqual(norm(decodeResult(name, r.body)), norm(value));
  },
  metaRequest(v) {
    const name = v.command as MetaCommand;
    const args = fromJson(v.args);
    assert.equal(hex(encodeMetaRequest(name, args as never)), v.hex);
    const m = decodeClientMessage(unhex(v.hex));
    assert.deepEqual([m.agentType, m.command], [0, META_COMMANDS[name].code]);
    assert.deepEqual(norm(decodeMetaArgs(name, m.data)), norm(args));
  },
  metaReply(v) {
    const name = v.command as MetaCommand;
    const value = fromJson(v.value);
    assert.equal(hex(encodeMetaReply(name, value as never)), v.hex);
    const r = decodeReply(unhex(v.hex));
    assert.ok(r.kind === 'meta');
    assert.equal(r.command, META_COMMANDS[name].code);
    assert.deepEqual(norm(decodeMetaResult(name, r.body)), norm(value));
  },
  metaError(v) {
    assert.equal(hex(encodeMetaError(v.requestCommand as number, v.message as string)), v.hex);
    assert.deepEqual(decodeReply(unhex(v.hex)), {
      kind: 'meta-error',
      requestCommand: v.requestCommand,
      message: v.message,
    });
  },
  error(v) {
    const detail = (v.detail as string | null) ?? null;
    assert.equal(
      hex(encodeError(v.token as number, v.errorKind as string, v.message as string, detail)),
      v.hex,
    );
    assert.deepEqual(decodeReply(unhex(v.hex)), {
      kind: 'error',
      token: v.token,
      errorKind: v.errorKind,
      message: v.message,
      detail,
    });
  },
  event(v) {
    const name = v.event as EventName;
    const value = fromJson(v.value);
    assert.equal(hex(encodeEvent(v.token as number, name, value as never)), v.hex);
    const r = decodeReply(unhex(v.hex));
    assert.ok(r.kind === 'event');
    assert.deepEqual([r.token, r.event], [v.token, EVENTS[name].code]);
    assert.deepEqual(norm(decodeEventBody(name, r.body)), norm(value));
  },
  plainFrame(v) {
    assert.equal(hex(encodePlainFrame(unhex(v.message as string), headerOf(v))), v.hex);
    assert.deepEqual(new FrameDecoder(limitOf(v), headerOf(v)).push(unhex(v.hex)).map(hex), [v.message]);
  },
  aesFrames(v) {
    const frames = v.frames as { nextIv: string; message: string; hex: string }[];
    const enc = new AesFrameEncoder(unhex(v.key as string), unhex(v.iv as string));
    for (const f of frames) assert.equal(hex(enc.encode(unhex(f.message), unhex(f.nextIv))), f.hex);
    const stream = Buffer.concat(frames.map((f) => unhex(f.hex)));
    assert.deepEqual(
      aesDecoder(v, new ReplayCache(16)).push(stream).map(hex),
      frames.map((f) => f.message),
    );
  },
};

const file = JSON.parse(readFileSync(new URL('../../spec/vectors.json', import.meta.url), 'utf8')) as {
  count: number;
  vectors: Vector[];
};
describe('spec/vectors.json (Outpost’s own vectors)', () => {
  test('the file declares its count and names are unique', () => {
    assert.equal(file.vectors.length, file.count);
    assert.equal(new Set(file.vectors.map((v) => v.name)).size, file.vectors.length);
  });
  for (const v of file.vectors) {
    test(v.name, () => {
      if (v.name.startsWith('reject.')) {
        const decode = DECODERS[v.kind];
        assert.ok(decode, `no decoder for reject vector kind ${v.kind}`);
        assert.throws(
          () => decode(v, unhex(v.hex)),
          (err: unknown) => err instanceof ProtocolError && err.code === v.error,
          `${v.name} must raise ProtocolError ${v.error}`,
        );
      } else {
        const check = CHECKS[v.kind];
        assert.ok(check, `no check for vector kind ${v.kind}`);
        check(v);
      }
    });
  }
});
