import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  CLIENT_HEADER_SIZE,
  encodeEvent,
  encodeEventPieces,
  encodePlainFrame,
  encodeProductRequest,
  encodeProductRequestPieces,
  encodeResponse,
  encodeResponsePieces,
  FrameDecoder,
  frameHeader,
  joinPieces,
  PIECES_HEAD,
  type Pieces,
  ProtocolError,
  REFERENCE_FROM,
  ReplayCache,
  TRANSIENT_PREALLOC,
} from '../../src/protocol/index.js';

/** Splits bytes at the given cut points (fractions of the length). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const a of at) {
    out.push(bytes.subarray(prev, a));
    prev = a;
  }
  out.push(bytes.subarray(prev));
  return out;
}

function feed(decoder: FrameDecoder, chunks: Buffer[]): (Buffer | Pieces)[] {
  const out: (Buffer | Pieces)[] = [];
  for (const c of chunks) out.push(...decoder.pushPieces(c));
  return out;
}

const messages = fc.array(
  fc.integer({ min: CLIENT_HEADER_SIZE, max: 3000 }).map((n) => randomBytes(n)),
  { minLength: 1, maxLength: 6 },
);
const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 });

describe('FrameDecoder.pushPieces', () => {
  test('plain: the pieces of every message join to the message, split anywhere; large spanning frames are not copied', () => {
    fc.assert(
      fc.property(messages, cuts, (msgs, at) => {
        const wire = Buffer.concat(msgs.map((m) => encodePlainFrame(m, CLIENT_HEADER_SIZE)));
        const chunks = split(wire, at);
        const got = feed(new FrameDecoder(1 << 20, CLIENT_HEADER_SIZE, 128), chunks);
        assert.equal(got.length, msgs.length);
        got.forEach((g, i) => {
          assert.deepEqual(joinPieces(g), msgs[i]);
          if (!Buffer.isBuffer(g)) {
            assert.ok(g.length >= 2, 'pieces come from several chunks');
            assert.ok(
              g[0]!.length >= Math.min(PIECES_HEAD, msgs[i]!.length),
              'the head holds PIECES_HEAD bytes',
            );
            // Views of the chunks, not copies (only the head may be copied).
            for (const p of g.slice(1)) assert.ok(chunks.some((c) => c.buffer === p.buffer));
          }
        });
      }),
      { numRuns: 300 },
    );
  });

  test('plain: frames below piecesFrom, or inside one chunk, come out whole', () => {
    const m = randomBytes(1000);
    const wire = encodePlainFrame(m, CLIENT_HEADER_SIZE);
    const [whole] = new FrameDecoder(1 << 20, CLIENT_HEADER_SIZE, 128).pushPieces(wire);
    assert.ok(Buffer.isBuffer(whole));
    const d = new FrameDecoder(1 << 20, CLIENT_HEADER_SIZE, 4096);
    const got = feed(d, [wire.subarray(0, 500), wire.subarray(500)]);
    assert.ok(Buffer.isBuffer(got[0]));
    assert.deepEqual(got[0], m);
  });

  test('AES: pieces decrypt to the message, split anywhere, and the IV chain carries on', () => {
    fc.assert(
      fc.property(messages, cuts, (msgs, at) => {
        const key = randomBytes(32);
        const iv = randomBytes(16);
        const enc = new AesFrameEncoder(key, iv);
        const wire = Buffer.concat(msgs.map((m) => enc.encode(m)));
        const dec = new AesFrameDecoder(key, iv, {
          maxSize: 1 << 20,
          headerSize: CLIENT_HEADER_SIZE,
          piecesFrom: 128,
          replay: new ReplayCache(100),
        });
        const got = feed(dec, split(wire, at));
        assert.equal(got.length, msgs.length);
        got.forEach((g, i) => {
          assert.deepEqual(joinPieces(g), msgs[i]);
          if (!Buffer.isBuffer(g)) assert.ok(g[0]!.length >= Math.min(PIECES_HEAD, msgs[i]!.length));
        });
      }),
      { numRuns: 200 },
    );
  });

  test('AES: a frame read in pieces is still checked whole: a bad last block fails, a replay is refused', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const m = randomBytes(2000);
    const frame = new AesFrameEncoder(key, iv).encode(m);
    const bad = Buffer.from(frame);
    bad[bad.length - 1]! ^= 1;
    const opts = { maxSize: 1 << 20, headerSize: CLIENT_HEADER_SIZE, piecesFrom: 128 };
    assert.throws(
      () => feed(new AesFrameDecoder(key, iv, opts), split(bad, [0.3, 0.6])),
      (e: unknown) => e instanceof ProtocolError && e.code === 'DECRYPT_FAILED',
    );
    const replay = new ReplayCache(100);
    const first = feed(new AesFrameDecoder(key, iv, { ...opts, replay }), split(frame, [0.5]));
    assert.deepEqual(joinPieces(first[0]!), m);
    assert.throws(
      () => feed(new AesFrameDecoder(key, iv, { ...opts, replay }), split(frame, [0.25, 0.75])),
      (e: unknown) => e instanceof ProtocolError && e.code === 'REPLAYED',
    );
  });
});

describe('encoders by reference', () => {
  test('WriteFile, a ReadFile Response and a Stdout event: pieces join to the copied encoding; the data is referenced, not copied', () => {
    const data = randomBytes(100_000);
    const cases: [Buffer[], Buffer][] = [
      [
        encodeProductRequestPieces(2, 'WriteFile', 7, { handle: 3, position: 5, data }),
        encodeProductRequest(2, 'WriteFile', 7, { handle: 3, position: 5, data }),
      ],
      [encodeResponsePieces(9, 'ReadFile', { data }), encodeResponse(9, 'ReadFile', { data })],
      [encodeEventPieces(4, 'Stdout', { data }), encodeEvent(4, 'Stdout', { data })],
    ];
    for (const [pieces, whole] of cases) {
      assert.deepEqual(Buffer.concat(pieces), whole);
      assert.ok(pieces.includes(data), 'the data buffer itself is a piece');
    }
    // Below REFERENCE_FROM it is one buffer, as before.
    const small = randomBytes(REFERENCE_FROM - 1);
    assert.equal(encodeEventPieces(4, 'Stdout', { data: small }).length, 1);
  });
});

describe('FrameDecoder.pushTransient', () => {
  /** Feeds each chunk through one reused buffer, scribbled over after every call (as a socket's onread buffer is). */
  function feedTransient(decoder: FrameDecoder, chunks: Buffer[]): Buffer[] {
    const reused = Buffer.alloc(Math.max(1, ...chunks.map((c) => c.length)));
    const out: Buffer[] = [];
    for (const c of chunks) {
      c.copy(reused);
      out.push(...decoder.pushTransient(reused.subarray(0, c.length)));
      reused.fill(0xa5);
    }
    return out;
  }

  test('every message comes out whole and owns its bytes, split anywhere (lengths split too)', () => {
    fc.assert(
      fc.property(messages, cuts, (msgs, at) => {
        const wire = Buffer.concat(msgs.map((m) => encodePlainFrame(m, CLIENT_HEADER_SIZE)));
        const d = new FrameDecoder(1 << 20, CLIENT_HEADER_SIZE);
        const got = feedTransient(d, split(wire, at));
        assert.deepEqual(got, msgs);
        assert.equal(d.pending, 0);
      }),
      { numRuns: 300 },
    );
  });

  test('a body over TRANSIENT_PREALLOC is gathered and joined; empty bodies and a partial tail are held', () => {
    const big = randomBytes(TRANSIENT_PREALLOC + 1000);
    const wire = Buffer.concat([
      encodePlainFrame(big, 0),
      encodePlainFrame(Buffer.alloc(0), 0),
      frameHeader(7),
    ]);
    const d = new FrameDecoder(TRANSIENT_PREALLOC * 2, 0);
    const chunks: Buffer[] = [];
    for (let off = 0; off < wire.length; off += 256 * 1024) chunks.push(wire.subarray(off, off + 256 * 1024));
    const got = feedTransient(d, chunks);
    assert.equal(got.length, 2);
    assert.ok(got[0]!.equals(big));
    assert.equal(got[1]!.length, 0);
    assert.deepEqual(d.pushTransient(Buffer.from([1, 2, 3])), []);
    assert.equal(d.pending, 3);
    // The frame completes; the byte after it starts the next length.
    assert.deepEqual(d.pushTransient(Buffer.from([4, 5, 6, 7, 8])), [Buffer.from([1, 2, 3, 4, 5, 6, 7])]);
    assert.equal(d.pending, 1);
  });

  test('a length over the limit is refused before its body is allocated, and the decoder stays failed', () => {
    const d = new FrameDecoder(1000, 0);
    const wire = frameHeader(1001);
    assert.deepEqual(d.pushTransient(wire.subarray(0, 3)), []);
    assert.throws(() => d.pushTransient(wire.subarray(3)), { code: 'LENGTH_LIMIT' });
    assert.throws(() => d.pushTransient(Buffer.alloc(1)), ProtocolError);
    assert.throws(() => new FrameDecoder(1000, 0).pushTransient(frameHeader(-1)), {
      code: 'NEGATIVE_LENGTH',
    });
  });
});
