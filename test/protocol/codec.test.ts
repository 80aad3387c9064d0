import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  AGENT_HEADER_SIZE,
  BinaryReader,
  BinaryWriter,
  bytesToGuid,
  CLIENT_HEADER_SIZE,
  dateToTicks,
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
  encodeError,
  encodeEvent,
  encodeMetaReply,
  encodeMetaRequest,
  encodePlainFrame,
  encodeProductRequest,
  encodeResponse,
  FrameDecoder,
  formatVersion,
  guidToBytes,
  META_COMMANDS,
  type MetaCommand,
  PRODUCT_COMMANDS,
  type ProductCommand,
  ProtocolError,
  packVersion,
  readToken,
  readValue,
  requestProblem,
  ticksToDate,
  unpackVersion,
} from '../../src/protocol/index.js';
import { arbitraryFor } from './arbitraries.js';

describe('binary conventions', () => {
  test('7-bit lengths match .NET Write7BitEncodedInt', () => {
    const cases: [number, string][] = [
      [0, '00'],
      [127, '7f'],
      [128, '8001'],
      [300, 'ac02'],
      [16383, 'ff7f'],
      [16384, '808001'],
      [0x7fffffff, 'ffffffff07'],
    ];
    for (const [n, h] of cases) {
      assert.equal(new BinaryWriter().varint(n).toBuffer().toString('hex'), h);
      assert.equal(new BinaryReader(Buffer.from(h, 'hex')).varint(), n);
    }
  });

  test('GUIDs use .NET byte order and round-trip', () => {
    const g = '01234567-89ab-cdef-0123-456789abcdef';
    assert.equal(guidToBytes(g).toString('hex'), '67452301ab89efcd0123456789abcdef');
    assert.equal(bytesToGuid(guidToBytes(g)), g);
  });

  test('ticks convert exactly to and from dates', () => {
    assert.equal(dateToTicks(new Date('1970-01-01T00:00:00Z')), 621355968000000000n);
    assert.equal(dateToTicks(new Date('2000-01-01T00:00:00.123Z')), 630822816001230000n);
    assert.equal(ticksToDate(630822816001230000n).toISOString(), '2000-01-01T00:00:00.123Z');
    assert.throws(() => dateToTicks(new Date('not a date')), ProtocolError);
  });

  test('version packing: major<<24 | minor<<16 | build<<8 | revision', () => {
    assert.equal(packVersion({ major: 1, minor: 2, build: 3, revision: 4 }), 0x01020304);
    assert.deepEqual(unpackVersion(0xff0c0900 | 0), { major: 255, minor: 12, build: 9, revision: 0 });
    assert.equal(formatVersion(packVersion({ major: 200, minor: 0, build: 0, revision: 1 })), '200.0.0.1');
  });

  test('a reader takes any non-zero bool byte as true', () => {
    for (const b of [1, 2, 0x80, 0xff]) assert.equal(new BinaryReader(Buffer.from([b])).bool(), true);
    assert.equal(new BinaryReader(Buffer.from([0])).bool(), false);
  });

  test('writers refuse out-of-range values with the typed error', () => {
    assert.throws(() => new BinaryWriter().i32(2 ** 31), ProtocolError);
    assert.throws(() => new BinaryWriter().u8(256), ProtocolError);
    assert.throws(() => new BinaryWriter().i64(2 ** 60), ProtocolError);
    assert.throws(() => new BinaryWriter().datetime(-1n), ProtocolError);
    assert.throws(
      () => encodeProductRequest(1, 'FileExists', 1, { path: 3 as unknown as string }),
      ProtocolError,
    );
  });

  test('a huge declared count never allocates: TRUNCATED before reading', () => {
    const data = Buffer.from('ffffff7f', 'hex');
    assert.throws(
      () => readValue(new BinaryReader(data), { array: 'i64' }),
      (e: unknown) => e instanceof ProtocolError && e.code === 'TRUNCATED',
    );
  });
});

describe('property: every command and event round-trips', () => {
  for (const [name, def] of Object.entries(PRODUCT_COMMANDS)) {
    test(`product ${name} request and result`, () => {
      const cmd = name as ProductCommand;
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          arbitraryFor(def.request),
          arbitraryFor(def.result),
          (agentType, token, args, result) => {
            const msg = encodeProductRequest(agentType, cmd, token, args as never);
            const m = decodeClientMessage(msg);
            assert.deepEqual([m.agentType, m.command, readToken(m.data)], [agentType, def.code, token]);
            assert.equal(requestProblem(m), null);
            assert.deepEqual(decodeProductArgs(cmd, m.data), args);
            // Fields after those a command defines are ignored (§5).
            assert.deepEqual(decodeProductArgs(cmd, Buffer.concat([m.data, Buffer.from([1, 2, 3])])), args);
            const r = decodeReply(encodeResponse(token, cmd, result as never));
            assert.ok(r.kind === 'response');
            assert.equal(r.token, token);
            assert.deepEqual(decodeResult(cmd, r.body), result);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
  for (const [name, def] of Object.entries(META_COMMANDS)) {
    test(`meta ${name} request and reply`, () => {
      const cmd = name as MetaCommand;
      fc.assert(
        fc.property(arbitraryFor(def.request), arbitraryFor(def.result), (args, result) => {
          const m = decodeClientMessage(encodeMetaRequest(cmd, args as never));
          assert.deepEqual([m.agentType, m.command], [0, def.code]);
          assert.equal(requestProblem(m), null);
          assert.deepEqual(decodeMetaArgs(cmd, m.data), args);
          const r = decodeReply(encodeMetaReply(cmd, result as never));
          assert.ok(r.kind === 'meta');
          assert.equal(r.command, def.code);
          assert.deepEqual(decodeMetaResult(cmd, r.body), result);
        }),
        { numRuns: 60 },
      );
    });
  }
  for (const [name, def] of Object.entries(EVENTS)) {
    test(`event ${name}`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          arbitraryFor(def.body),
          (token, body) => {
            const r = decodeReply(encodeEvent(token, name as EventName, body as never));
            assert.ok(r.kind === 'event');
            assert.deepEqual([r.token, r.event], [token, def.code]);
            assert.deepEqual(decodeEventBody(name as EventName, r.body), body);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
  test('errors round-trip, with and without detail', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        fc.string(),
        fc.string(),
        fc.option(fc.string(), { nil: null }),
        (token, kind, message, detail) => {
          assert.deepEqual(decodeReply(encodeError(token, kind, message, detail)), {
            kind: 'error',
            token,
            errorKind: kind,
            message,
            detail,
          });
        },
      ),
    );
  });
  test('requestProblem names what is wrong with a first frame', () => {
    const bad = (agentType: number, command: number, data: number[]) =>
      requestProblem({ agentType, command, data: Buffer.from(data) });
    assert.equal(bad(4, 3, [0, 0, 0, 0]), 'agent-type');
    assert.equal(bad(0, 77, []), 'command');
    assert.equal(bad(1, 77, [1, 0, 0, 0]), 'command');
    assert.equal(bad(1, 2, [1, 0]), 'token');
    assert.equal(bad(1, 2, [1, 0, 0, 0, 5]), 'arguments');
    assert.equal(bad(0, 3, [1, 2]), 'arguments');
    assert.equal(bad(0, 3, [1, 2, 3, 4]), null);
    assert.equal(bad(1, 2, [1, 0, 0, 0, 1, 0x61]), null);
  });
});

/** Splits `data` at random points. */
function splits(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(data.subarray(prev, p));
    prev = p;
  }
  out.push(data.subarray(prev));
  return out;
}

describe('frame decoders take arbitrary chunks', () => {
  const messages = fc.array(fc.uint8Array({ minLength: CLIENT_HEADER_SIZE, maxLength: 300 }), {
    minLength: 1,
    maxLength: 8,
  });

  test('plain: byte by byte and random splits give the same frames', () => {
    fc.assert(
      fc.property(messages, fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map((m) => encodePlainFrame(m, CLIENT_HEADER_SIZE)));
        const expected = msgs.map((m) => Buffer.from(m).toString('hex'));
        const one = new FrameDecoder(1024, CLIENT_HEADER_SIZE);
        const byByte = [...stream].flatMap((b) => one.push(Buffer.from([b])));
        assert.deepEqual(
          byByte.map((b) => b.toString('hex')),
          expected,
        );
        const two = new FrameDecoder(1024, CLIENT_HEADER_SIZE);
        const bySplit = splits(stream, cuts).flatMap((c) => two.push(c));
        assert.deepEqual(
          bySplit.map((b) => b.toString('hex')),
          expected,
        );
        assert.equal(two.pending, 0);
      }),
      { numRuns: 100 },
    );
  });

  test('AES: random splits, chained IVs, every key size', () => {
    fc.assert(
      fc.property(
        messages,
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.constantFrom(16, 24, 32),
        (msgs, cuts, keyLen) => {
          const key = randomBytes(keyLen);
          const iv = randomBytes(16);
          const enc = new AesFrameEncoder(key, iv);
          const stream = Buffer.concat(msgs.map((m) => enc.encode(m)));
          const dec = new AesFrameDecoder(key, iv, { maxSize: 4096, headerSize: CLIENT_HEADER_SIZE });
          const got = splits(stream, cuts).flatMap((c) => dec.push(c));
          assert.deepEqual(
            got.map((b) => b.toString('hex')),
            msgs.map((m) => Buffer.from(m).toString('hex')),
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  test('AES: the one running cipher gives the bytes of a fresh cipher per frame, both ways', () => {
    // Reference: the frame format written out with a new createCipheriv per frame.
    const alg = (k: Buffer) => `aes-${k.length * 8}-cbc`;
    const refEncode = (k: Buffer, iv: Buffer, next: Buffer, m: Buffer) => {
      const c = createCipheriv(alg(k), k, iv);
      const body = Buffer.concat([c.update(next), c.update(m), c.final()]);
      const h = Buffer.alloc(4);
      h.writeInt32LE(body.length);
      return Buffer.concat([h, body]);
    };
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: AGENT_HEADER_SIZE, max: 40_000 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom(16, 24, 32),
        (sizes, keyLen) => {
          const key = randomBytes(keyLen);
          const hiv = randomBytes(16);
          const enc = new AesFrameEncoder(key, hiv);
          const dec = new AesFrameDecoder(key, hiv, { maxSize: 1 << 20, headerSize: AGENT_HEADER_SIZE });
          let iv = hiv;
          for (const n of sizes) {
            const m = randomBytes(n);
            const next = randomBytes(16);
            const ref = refEncode(key, iv, next, m);
            assert.deepEqual(Buffer.concat(enc.encodePieces(m, next)), ref);
            const got = dec.push(ref);
            assert.equal(got.length, 1);
            assert.deepEqual(got[0], m);
            iv = next;
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  test('AES: a frame whose padding bytes disagree is refused', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const c = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    // nextIV block + one block ending in ...03 02 03 (bad PKCS#7).
    const plain = Buffer.concat([randomBytes(16), Buffer.from('abcdefghijklm'), Buffer.from([3, 2, 3])]);
    const body = Buffer.concat([c.update(plain), c.final()]);
    const h = Buffer.alloc(4);
    h.writeInt32LE(body.length);
    assert.throws(
      () => new AesFrameDecoder(key, iv, { headerSize: 0 }).push(Buffer.concat([h, body])),
      (e: unknown) => e instanceof ProtocolError && e.code === 'DECRYPT_FAILED',
    );
  });

  test('the same message encrypts differently each time (fresh nextIV)', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const a = new AesFrameEncoder(key, iv).encode(Buffer.from('same'));
    const b = new AesFrameEncoder(key, iv).encode(Buffer.from('same'));
    assert.notDeepEqual(a, b);
  });

  test('an oversize length is refused from the header alone', () => {
    const d = new FrameDecoder(1000, CLIENT_HEADER_SIZE);
    const header = Buffer.alloc(4);
    header.writeInt32LE(1001);
    assert.throws(
      () => d.push(header),
      (e: unknown) => e instanceof ProtocolError && e.code === 'LENGTH_LIMIT',
    );
    // A failed decoder stays failed.
    assert.throws(() => d.push(Buffer.from([1])), ProtocolError);
  });

  test('a tampered AES frame fails as DECRYPT_FAILED whatever the tampering', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const frame = new AesFrameEncoder(key, iv).encode(Buffer.from('hello world'));
    const decoder = () => new AesFrameDecoder(key, iv, { headerSize: CLIENT_HEADER_SIZE });
    let failures = 0;
    for (let i = 4; i < frame.length; i++) {
      const t = Buffer.from(frame);
      t[i] = t[i]! ^ 0xff;
      try {
        decoder().push(t);
      } catch (e) {
        assert.ok(e instanceof ProtocolError);
        assert.equal(e.code, 'DECRYPT_FAILED');
        failures++;
      }
    }
    // CBC without a MAC cannot catch every flip, but flips in the last block break the padding.
    assert.ok(failures >= 16, `only ${failures} tamperings detected`);
  });
});

describe('fuzz: random bytes never escape as anything but ProtocolError', () => {
  const decoders: [string, (b: Buffer) => unknown][] = [
    ['decodeClientHello', decodeClientHello],
    ['decodeAgentReply', decodeAgentReply],
    ['decodeClientMessage', decodeClientMessage],
    ['requestProblem', (b) => requestProblem(decodeClientMessage(b))],
    ['decodeReply', decodeReply],
    ['FrameDecoder', (b) => new FrameDecoder(1 << 16, CLIENT_HEADER_SIZE).push(b)],
    [
      'AesFrameDecoder',
      (b) =>
        new AesFrameDecoder(Buffer.alloc(32, 1), Buffer.alloc(16, 2), {
          maxSize: 1 << 16,
          headerSize: CLIENT_HEADER_SIZE,
        }).push(b),
    ],
    ...Object.keys(PRODUCT_COMMANDS).flatMap((name): [string, (b: Buffer) => unknown][] => [
      [`args ${name}`, (b) => decodeProductArgs(name as ProductCommand, b)],
      [`result ${name}`, (b) => decodeResult(name as ProductCommand, b)],
    ]),
    ...Object.keys(META_COMMANDS).flatMap((name): [string, (b: Buffer) => unknown][] => [
      [`meta args ${name}`, (b) => decodeMetaArgs(name as MetaCommand, b)],
      [`meta result ${name}`, (b) => decodeMetaResult(name as MetaCommand, b)],
    ]),
    ...Object.keys(EVENTS).map((name): [string, (b: Buffer) => unknown] => [
      `event ${name}`,
      (b) => decodeEventBody(name as EventName, b),
    ]),
  ];
  test('every decoder, random and mutated inputs', () => {
    const seeds = [
      encodeProductRequest(1, 'StartProcess', 5, {
        fileName: 'sh',
        args: ['-c', 'x'],
        workingDirectory: null,
        environment: { A: 'B' },
        flags: 0,
      }),
      encodeResponse(3, 'ListDirectory', {
        entries: [{ fullPath: '/x', isDirectory: false, size: 1, lastWriteUtc: 5n, mode: 0o100644 }],
      }),
    ];
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc.tuple(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, i, v]) => {
        const b = Buffer.from(s);
        b[i % b.length] = v;
        return b;
      }),
    );
    const before = process.memoryUsage().heapUsed;
    fc.assert(
      fc.property(input, (bytes) => {
        for (const [name, decode] of decoders) {
          try {
            decode(bytes);
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw new Error(`${name} threw ${String(e)}`);
          }
        }
      }),
      { numRuns: 1500 },
    );
    assert.ok(process.memoryUsage().heapUsed - before < 256 * 1024 * 1024, 'no oversized allocation');
  });
});
