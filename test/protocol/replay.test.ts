/**
 * The AES replay cache (PROTOCOL.md §3): a frame accepted once is refused
 * afterwards, on this decoder or any other sharing the cache; the cache holds
 * at least its capacity of the newest frames and forgets the oldest first;
 * deletions never break the lookup of what remains.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AesFrameDecoder,
  AesFrameEncoder,
  CLIENT_HEADER_SIZE,
  encodeMetaRequest,
  ProtocolError,
  REPLAY_CACHE_CAPACITY,
  ReplayCache,
} from '../../src/protocol/index.js';

const refused = (code: string) => (e: unknown) => e instanceof ProtocolError && e.code === code;

describe('ReplayCache', () => {
  test('a frame seen once is refused, a fresh one accepted', () => {
    const cache = new ReplayCache(100);
    const a = randomBytes(64);
    const b = randomBytes(64);
    assert.equal(cache.add(a), true);
    assert.equal(cache.add(b), true);
    assert.equal(cache.add(Buffer.from(a)), false);
    assert.equal(cache.hits, 1);
    // The first block is not part of what is remembered: altering it is still a replay.
    const altered = Buffer.from(a);
    altered[0] = altered[0]! ^ 0xff;
    assert.equal(cache.add(altered), false);
    assert.equal(cache.size, 2);
  });

  test('holds the newest `capacity` frames and forgets the oldest first (model check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.nat({ max: 120 }), { maxLength: 400 }),
        (cap, seq) => {
          const cache = new ReplayCache(cap);
          const frames = new Map<number, Buffer>();
          const frame = (n: number) => {
            const f = frames.get(n) ?? randomBytes(32);
            frames.set(n, f);
            return f;
          };
          const window: number[] = [];
          for (const n of seq) {
            const expected = !window.includes(n);
            assert.equal(cache.add(frame(n)), expected, `frame ${n}`);
            if (expected) {
              window.push(n);
              if (window.length > cap) window.shift();
            }
            assert.equal(cache.size, window.length);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  test('the default capacity is the contract minimum and fits 32 MiB', () => {
    assert.ok(REPLAY_CACHE_CAPACITY >= 1_000_000);
    const before = process.memoryUsage().arrayBuffers;
    const cache = new ReplayCache();
    const after = process.memoryUsage().arrayBuffers;
    assert.ok(after - before <= 32 * 1024 * 1024, `${after - before} bytes`);
    // Fill past capacity: the newest frames are still remembered.
    const frame = Buffer.alloc(32);
    for (let i = 0; i < REPLAY_CACHE_CAPACITY + 5000; i++) {
      frame.writeUInt32LE(i, 16);
      frame.writeUInt32LE(i * 7 + 1, 24);
      assert.ok(cache.add(frame));
    }
    assert.equal(cache.size, REPLAY_CACHE_CAPACITY);
    frame.writeUInt32LE(REPLAY_CACHE_CAPACITY + 4999, 16);
    frame.writeUInt32LE((REPLAY_CACHE_CAPACITY + 4999) * 7 + 1, 24);
    assert.equal(cache.add(frame), false);
    frame.writeUInt32LE(0, 16);
    frame.writeUInt32LE(1, 24);
    assert.equal(cache.add(frame), true, 'the oldest was forgotten');
  });

  test('decoders sharing a cache refuse a frame replayed on another connection', () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const cache = new ReplayCache(1000);
    const frame = new AesFrameEncoder(key, iv).encode(encodeMetaRequest('Ping', { token: 1 }));
    const first = new AesFrameDecoder(key, iv, { headerSize: CLIENT_HEADER_SIZE, replay: cache });
    assert.equal(first.push(frame).length, 1);
    const second = new AesFrameDecoder(key, iv, { headerSize: CLIENT_HEADER_SIZE, replay: cache });
    assert.throws(() => second.push(frame), refused('REPLAYED'));
    // With the first block altered (it only garbles nextIV), still a replay.
    const altered = Buffer.from(frame);
    altered[4] = altered[4]! ^ 1;
    const third = new AesFrameDecoder(key, iv, { headerSize: CLIENT_HEADER_SIZE, replay: cache });
    assert.throws(() => third.push(altered), refused('REPLAYED'));
  });
});
