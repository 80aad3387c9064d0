/** JSON conventions of spec/vectors.json, shared by the generator and the tests. */
import { array, map, nullable, type Schema } from '../../src/protocol/schema.js';

export const SCHEMAS: Record<string, Schema> = {
  u8: 'u8',
  bool: 'bool',
  i32: 'i32',
  i64: 'i64',
  string: 'string',
  bytes: 'bytes',
  guid: 'guid',
  datetime: 'datetime',
  'nullable<i32>': nullable('i32'),
  'string[]': array('string'),
  'map<string>': map('string'),
};

/** JSON → codec value: {$hex} → Buffer, {$bigint} → bigint, recursively. */
export function fromJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromJson);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.$hex === 'string') return Buffer.from(o.$hex, 'hex');
    if (typeof o.$bigint === 'string') return BigInt(o.$bigint);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fromJson(x)]));
  }
  return v;
}

/** Codec value → JSON (a JSON.stringify replacer body). */
export function toJson(v: unknown): unknown {
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (v instanceof Uint8Array) return { $hex: Buffer.from(v).toString('hex') };
  if (
    v !== null &&
    typeof v === 'object' &&
    (v as { type?: string }).type === 'Buffer' &&
    Array.isArray((v as { data?: unknown }).data)
  )
    return { $hex: Buffer.from((v as { data: number[] }).data).toString('hex') };
  return v;
}
