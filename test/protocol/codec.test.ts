import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  BinaryReader,
  BinaryWriter,
  bytesToGuid,
  type CommandName,
  dateToTicks,
  decodeAgentReply,
  decodeArgs,
  decodeClientHello,
  decodeEventBody,
  decodeReply,
  decodeRequest,
  decodeRequestHeader,
  decodeResult,
  EVENTS,
  type EventName,
  encodeError,
  encodeEvent,
  encodePlainFrame,
  encodeRequest,
  encodeResult,
  FrameDecoder,
  guidToBytes,
  META_COMMANDS,
  PRODUCT_COMMANDS,
  ProtocolError,
  packVersion,
  readValue,
  ticksToDate,
  unpackVersion,
} from '../../src/protocol/index.js';
import { arbitraryFor } from './arbitraries.js';

const ALL_COMMANDS = { ...META_COMMANDS, ...PRODUCT_COMMANDS };

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

  test('version packing', () => {
    assert.equal(packVersion(1, 0), 0x00010000);
    assert.deepEqual(unpackVersion(packVersion(1, 7)), { major: 1, minor: 7 });
  });

  test('writers refuse out-of-range values with the typed error', () => {
    assert.throws(() => new BinaryWriter().i32(2 ** 31), ProtocolError);
    assert.throws(() => new BinaryWriter().u8(256), ProtocolError);
    assert.throws(() => new BinaryWriter().i64(2 ** 60), ProtocolError);
    assert.throws(() => new BinaryWriter().datetime(-1n), ProtocolError);
    assert.throws(() => encodeRequest(1, 1, 'FileExists', { path: 3 as unknown as string }), ProtocolError);
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
  for (const [name, def] of Object.entries(ALL_COMMANDS)) {
    test(`${name} request and result`, () => {
      const cmd = name as CommandName;
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: -0x80000000, max: 0x7fffffff }),
          arbitraryFor(def.request),
          arbitraryFor(def.result),
          (agentType, token, args, result) => {
            const msg = encodeRequest(agentType, token, cmd, args as any);
            const d = decodeRequest(msg);
            assert.equal(d.name, cmd);
            assert.equal(d.token, token);
            assert.deepEqual(d.args, args);
            assert.deepEqual(decodeArgs(cmd, decodeRequestHeader(msg).body), args);
            assert.deepEqual(decodeResult(cmd, encodeResult(cmd, result as any)), result);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
  for (const [name, def] of Object.entries(EVENTS)) {
    test(`event ${name}`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: 3 }),
          fc.integer(),
          arbitraryFor(def.body),
          (agentType, token, body) => {
            const r = decodeReply(encodeEvent(agentType, token, name as EventName, body as any));
            assert.equal(r.kind, 'event');
            if (r.kind === 'event') assert.deepEqual(decodeEventBody(name as EventName, r.body), body);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
  test('errors round-trip', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer(),
        fc.integer(),
        fc.string(),
        (t, token, kind, msg) => {
          assert.deepEqual(decodeReply(encodeError(t, token, kind, msg)), {
            kind: 'error',
            agentType: t,
            token,
            errorKind: kind,
            message: msg,
          });
        },
      ),
    );
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
  const messages = fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 8 });

  test('plain: byte by byte and random splits give the same frames', () => {
    fc.assert(
      fc.property(messages, fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
        const stream = Buffer.concat(msgs.map((m) => encodePlainFrame(m)));
        const expected = msgs.map((m) => Buffer.from(m).toString('hex'));
        const one = new FrameDecoder(1024);
        const byByte = [...stream].flatMap((b) => one.push(Buffer.from([b])));
        assert.deepEqual(
          byByte.map((b) => b.toString('hex')),
          expected,
        );
        const two = new FrameDecoder(1024);
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
          const dec = new AesFrameDecoder(key, iv, 4096);
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
        fc.array(fc.integer({ min: 0, max: 40_000 }), { minLength: 1, maxLength: 8 }),
        fc.constantFrom(16, 24, 32),
        (sizes, keyLen) => {
          const key = randomBytes(keyLen);
          const hiv = randomBytes(16);
          const enc = new AesFrameEncoder(key, hiv);
          const dec = new AesFrameDecoder(key, hiv, 1 << 20);
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
      () => new AesFrameDecoder(key, iv).push(Buffer.concat([h, body])),
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
    const d = new FrameDecoder(1000);
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
    let failures = 0;
    for (let i = 4; i < frame.length; i++) {
      const t = Buffer.from(frame);
      t[i] = t[i]! ^ 0xff;
      try {
        new AesFrameDecoder(key, iv).push(t);
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
    ['decodeRequest', decodeRequest],
    ['decodeReply', decodeReply],
    ['FrameDecoder', (b) => new FrameDecoder(1 << 16).push(b)],
    [
      'AesFrameDecoder',
      (b) => new AesFrameDecoder(Buffer.alloc(32, 1), Buffer.alloc(16, 2), 1 << 16).push(b),
    ],
    ...Object.keys(ALL_COMMANDS).flatMap((name): [string, (b: Buffer) => unknown][] => [
      [`args ${name}`, (b) => decodeArgs(name as CommandName, b)],
      [`result ${name}`, (b) => decodeResult(name as CommandName, b)],
    ]),
    ...Object.keys(EVENTS).map((name): [string, (b: Buffer) => unknown] => [
      `event ${name}`,
      (b) => decodeEventBody(name as EventName, b),
    ]),
  ];
  test('every decoder, random and mutated inputs', () => {
    const seeds = [
      encodeRequest(1, 5, 'StartProcess', {
        fileName: 'sh',
        arguments: ['-c', 'x'],
        workingDirectory: null,
        environment: { A: 'B' },
        flags: 0,
      }),
      encodeResult('ListDirectory', {
        entries: [{ name: 'x', kind: 1, size: 1, lastWriteTime: 5n, mode: 1 }],
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
