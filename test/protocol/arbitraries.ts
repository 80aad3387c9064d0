/** fast-check arbitraries derived from the protocol schemas. */
import fc from 'fast-check';
import { MAX_TICKS } from '../../src/protocol/binary.js';
import type { Schema } from '../../src/protocol/schema.js';

const guidArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
});

export function arbitraryFor(s: Schema): fc.Arbitrary<unknown> {
  if (typeof s === 'string') {
    switch (s) {
      case 'u8':
        return fc.integer({ min: 0, max: 255 });
      case 'bool':
        return fc.boolean();
      case 'i32':
        return fc.integer({ min: -0x80000000, max: 0x7fffffff });
      case 'i64':
        return fc.maxSafeInteger();
      case 'string':
        return fc.string({ unit: 'binary', maxLength: 40 });
      case 'bytes':
        return fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b));
      case 'guid':
        return guidArb;
      case 'datetime':
        return fc.bigInt({ min: 0n, max: MAX_TICKS });
    }
  }
  if ('nullable' in s) return fc.option(arbitraryFor(s.nullable), { nil: null });
  if ('array' in s) return fc.array(arbitraryFor(s.array), { maxLength: 5 });
  if ('map' in s)
    return fc
      .dictionary(fc.string({ maxLength: 8 }), arbitraryFor(s.map), { maxKeys: 5 })
      .map((d) => ({ ...d }));
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, f] of s.struct) fields[name] = arbitraryFor(f);
  return fc.record(fields).map((r) => ({ ...r }));
}
