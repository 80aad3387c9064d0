/**
 * Generated inputs for the stress suite, all derived from the catalog in
 * src/protocol/messages.ts (through dist/protocol), so a command added to the
 * catalog is fuzzed without touching this file:
 *   - a seeded PRNG (a run is reproducible from its printed seed);
 *   - a valid value for any schema (`genValue`), with edge values mixed in;
 *   - mutators that keep a valid input "almost valid" (bit flips, cuts,
 *     inserted bytes, length fields set to 0, −1, 2^31−1…).
 */
import {
  array,
  BinaryWriter,
  MAX_TICKS,
  META_COMMANDS,
  PRODUCT_COMMANDS,
  writeValue,
} from '../../dist/protocol/index.js';

/** sfc32: small, fast, good enough for fuzzing, and seedable. */
export function makeRng(seed) {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88;
  let c = 0xb7e15162 ^ Math.imul(seed, 0x85ebca6b);
  let d = 1;
  const next = () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  const r = {
    u32: next,
    /** An integer in [0, n). */
    int: (n) => Math.floor((next() / 0x1_0000_0000) * n),
    chance: (p) => next() / 0x1_0000_0000 < p,
    pick: (arr) => arr[r.int(arr.length)],
    bytes(n) {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) out[i] = next() & 0xff;
      return out;
    },
  };
  return r;
}

/** Integers that break careless code: signs, limits, off-by-ones. */
export const EDGE_I32 = [
  0,
  1,
  -1,
  2,
  0x7f,
  0x80,
  0xff,
  0xffff,
  0x7fffffff,
  -0x80000000,
  0x7ffffffe,
  65536,
  1 << 24,
];

const WORDS = ['a', 'dir', 'file.txt', '..', '.', '', ' ', 'ü', '日本', '\u0000', 'x'.repeat(300)];

/** A string: short ASCII, Unicode, path-like, or a long one. `pool` (when given) is picked from half the time. */
export function genString(r, pool) {
  if (pool && r.chance(0.5)) return r.pick(pool);
  switch (r.int(5)) {
    case 0:
      return r.pick(WORDS);
    case 1:
      return Array.from({ length: r.int(4) + 1 }, () => r.pick(WORDS)).join('/');
    case 2:
      return r.bytes(r.int(24)).toString('latin1');
    case 3:
      return String.fromCodePoint(...Array.from({ length: r.int(8) }, () => 0x20 + r.int(0xd000)));
    default:
      return r.bytes(r.int(12)).toString('hex');
  }
}

/**
 * A valid value of `schema`. `ctx.strings(fieldName)` may return a pool of
 * strings for a field (paths, process names); `ctx.maxBytes` bounds `bytes`.
 */
export function genValue(r, schema, ctx = {}, field = '', depth = 0) {
  if (typeof schema === 'string') {
    switch (schema) {
      case 'u8':
        return r.chance(0.5) ? r.int(8) : r.int(256);
      case 'bool':
        return r.chance(0.5);
      case 'i32':
        return r.chance(0.4) ? r.pick(EDGE_I32) : (r.u32() | 0) >> r.int(32);
      case 'i64':
        return r.chance(0.3) ? r.pick([0, -1, 1, 2 ** 53 - 1, -(2 ** 53) + 1]) : r.int(1 << 30) - (1 << 29);
      case 'string':
        return genString(r, ctx.strings?.(field));
      case 'bytes': {
        const max = ctx.maxBytes ?? 256;
        return r.bytes(r.chance(0.9) ? r.int(Math.min(64, max) + 1) : r.int(max + 1));
      }
      case 'guid':
        return r.bytes(16).toString('hex');
      case 'datetime':
        return r.chance(0.2)
          ? r.pick([0n, MAX_TICKS])
          : BigInt(r.int(1 << 30)) * 2_000_000_000n + 621355968000000000n;
    }
  }
  if ('nullable' in schema) return r.chance(0.5) ? null : genValue(r, schema.nullable, ctx, field, depth);
  if ('array' in schema) {
    const n = depth > 2 ? 0 : r.int(4);
    return Array.from({ length: n }, () => genValue(r, schema.array, ctx, field, depth + 1));
  }
  if ('map' in schema) {
    const out = {};
    const n = r.int(4);
    for (let i = 0; i < n; i++) out[`${genString(r)}#${i}`] = genValue(r, schema.map, ctx, field, depth + 1);
    return out;
  }
  const out = {};
  for (const [name, f] of schema.struct) out[name] = genValue(r, f, ctx, name, depth + 1);
  return out;
}

/** Encodes a value of a schema (no envelope). */
export function encode(schema, value) {
  const w = new BinaryWriter(64);
  writeValue(w, schema, value);
  return Buffer.from(w.view());
}

/** A copy of `buf` changed the way fuzzers find bugs. */
export function mutate(r, buf) {
  const b = Buffer.from(buf);
  switch (r.int(7)) {
    case 0: {
      // flip a few bits
      const n = 1 + r.int(3);
      for (let i = 0; i < n && b.length > 0; i++) b[r.int(b.length)] ^= 1 << r.int(8);
      return b;
    }
    case 1:
      return b.subarray(0, r.int(b.length + 1)); // truncate
    case 2: {
      // insert random bytes
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)), b.subarray(at)]);
    }
    case 3: {
      // an int32 somewhere set to an edge value (lengths, counts, handles)
      if (b.length < 4) return r.bytes(r.int(8));
      const at = r.int(b.length - 3);
      b.writeInt32LE(r.pick([0x7fffffff, -1, -0x80000000, 0, 0x10000000, b.length, b.length + 1]), at);
      return b;
    }
    case 4: {
      // a 7-bit varint that never ends, or one over int32
      const at = r.int(b.length + 1);
      const v = r.pick([
        [0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        [0xff, 0xff, 0xff, 0xff, 0x0f],
        [0x80, 0x80, 0x80, 0x80, 0x80],
        [0xff, 0xff, 0xff, 0xff, 0x07],
      ]);
      return Buffer.concat([b.subarray(0, at), Buffer.from(v), b.subarray(at)]);
    }
    case 5: {
      // invalid UTF-8 in place
      if (b.length === 0) return Buffer.from([0xc3]);
      b[r.int(b.length)] = r.pick([0xc0, 0xff, 0xed, 0x80, 0xf8]);
      return b;
    }
    default:
      return Buffer.concat([b, r.bytes(1 + r.int(16))]); // trailing bytes
  }
}

/** Every (schema, label) the catalog defines: requests, results, event bodies. */
export function catalogSchemas(events) {
  const out = [];
  for (const [n, d] of Object.entries(META_COMMANDS)) {
    out.push({ label: `meta ${n} request`, schema: d.request, kind: 'meta-args', name: n });
    out.push({ label: `meta ${n} result`, schema: d.result, kind: 'meta-result', name: n });
  }
  for (const [n, d] of Object.entries(PRODUCT_COMMANDS)) {
    out.push({ label: `${n} request`, schema: d.request, kind: 'product-args', name: n });
    out.push({ label: `${n} result`, schema: d.result, kind: 'result', name: n });
  }
  for (const [n, d] of Object.entries(events))
    out.push({ label: `event ${n}`, schema: d.body, kind: 'event', name: n });
  out.push({ label: 'array<string>', schema: array('string'), kind: 'raw' });
  return out;
}
