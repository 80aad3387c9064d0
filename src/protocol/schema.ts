/**
 * A small declarative schema for message bodies, so the catalog is one table
 * of data and every encoder/decoder (and every property test) is derived from
 * it rather than written by hand per message.
 */
import { type BinaryReader, BinaryWriter } from './binary.js';
import { ProtocolError } from './errors.js';

export type Primitive = 'u8' | 'bool' | 'i32' | 'i64' | 'string' | 'bytes' | 'guid' | 'datetime';
export type Field = readonly [name: string, schema: Schema];
export type Schema =
  | Primitive
  | { readonly nullable: Schema }
  | { readonly array: Schema }
  | { readonly map: Schema }
  | { readonly struct: readonly Field[] };

type InferStruct<F extends readonly Field[]> = { [E in F[number] as E[0]]: Infer<E[1]> };

/** The TypeScript value type a schema decodes to. */
export type Infer<S> = S extends 'u8' | 'i32' | 'i64'
  ? number
  : S extends 'bool'
    ? boolean
    : S extends 'string' | 'guid'
      ? string
      : S extends 'bytes'
        ? Uint8Array
        : S extends 'datetime'
          ? bigint
          : S extends { readonly nullable: infer T }
            ? Infer<T> | null
            : S extends { readonly array: infer T }
              ? Infer<T>[]
              : S extends { readonly map: infer T }
                ? Record<string, Infer<T>>
                : S extends { readonly struct: infer F extends readonly Field[] }
                  ? InferStruct<F>
                  : never;

export const struct = <const F extends readonly Field[]>(...fields: F): { readonly struct: F } => ({
  struct: fields,
});
export const nullable = <const S extends Schema>(s: S): { readonly nullable: S } => ({ nullable: s });
export const array = <const S extends Schema>(s: S): { readonly array: S } => ({ array: s });
export const map = <const S extends Schema>(s: S): { readonly map: S } => ({ map: s });

/** The fewest bytes one value of the schema can take (guards counts). */
export function minSize(s: Schema): number {
  if (typeof s === 'string') {
    switch (s) {
      case 'u8':
      case 'bool':
      case 'string':
        return 1;
      case 'i32':
      case 'bytes':
        return 4;
      case 'i64':
      case 'datetime':
        return 8;
      case 'guid':
        return 16;
    }
  }
  if ('nullable' in s) return 1;
  if ('array' in s || 'map' in s) return 4;
  return s.struct.reduce((n, [, f]) => n + minSize(f), 0);
}

function fail(path: string, what: string): never {
  throw new ProtocolError('BAD_VALUE', `${path}: ${what}`);
}

export function writeValue(w: BinaryWriter, s: Schema, v: unknown, path = 'value'): void {
  if (typeof s === 'string') {
    switch (s) {
      case 'u8':
        if (typeof v !== 'number') fail(path, 'expected a number');
        w.u8(v);
        return;
      case 'bool':
        if (typeof v !== 'boolean') fail(path, 'expected a boolean');
        w.bool(v);
        return;
      case 'i32':
        if (typeof v !== 'number') fail(path, 'expected a number');
        w.i32(v);
        return;
      case 'i64':
        if (typeof v !== 'number' && typeof v !== 'bigint') fail(path, 'expected a number');
        w.i64(v);
        return;
      case 'string':
        if (typeof v !== 'string') fail(path, 'expected a string');
        w.string(v);
        return;
      case 'bytes':
        if (!(v instanceof Uint8Array)) fail(path, 'expected bytes');
        w.bytes(v);
        return;
      case 'guid':
        if (typeof v !== 'string') fail(path, 'expected a GUID string');
        w.guid(v);
        return;
      case 'datetime':
        if (typeof v !== 'bigint') fail(path, 'expected ticks as a bigint');
        w.datetime(v);
        return;
    }
  }
  if ('nullable' in s) {
    if (v === null || v === undefined) {
      w.bool(false);
    } else {
      w.bool(true);
      writeValue(w, s.nullable, v, path);
    }
    return;
  }
  if ('array' in s) {
    if (!Array.isArray(v)) fail(path, 'expected an array');
    w.i32(v.length);
    for (let i = 0; i < v.length; i++) writeValue(w, s.array, v[i], `${path}[${i}]`);
    return;
  }
  if ('map' in s) {
    if (v === null || typeof v !== 'object') fail(path, 'expected an object');
    const entries = Object.entries(v as Record<string, unknown>);
    w.i32(entries.length);
    for (const [k, item] of entries) {
      w.string(k);
      writeValue(w, s.map, item, `${path}.${k}`);
    }
    return;
  }
  if (v === null || typeof v !== 'object') fail(path, 'expected an object');
  const obj = v as Record<string, unknown>;
  for (const [name, f] of s.struct) writeValue(w, f, obj[name], `${path}.${name}`);
}

export function readValue(r: BinaryReader, s: Schema): unknown {
  if (typeof s === 'string') {
    switch (s) {
      case 'u8':
        return r.u8();
      case 'bool':
        return r.bool();
      case 'i32':
        return r.i32();
      case 'i64':
        return r.i64();
      case 'string':
        return r.string();
      case 'bytes':
        return r.bytes();
      case 'guid':
        return r.guid();
      case 'datetime':
        return r.datetime();
    }
  }
  if ('nullable' in s) return r.bool() ? readValue(r, s.nullable) : null;
  if ('array' in s) {
    const n = r.count(minSize(s.array));
    const out: unknown[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = readValue(r, s.array);
    return out;
  }
  if ('map' in s) {
    const n = r.count(1 + minSize(s.map));
    const out: Record<string, unknown> = Object.create(null);
    for (let i = 0; i < n; i++) {
      const k = r.string();
      if (Object.hasOwn(out, k))
        throw new ProtocolError('BAD_VALUE', `duplicate map key ${JSON.stringify(k)}`);
      out[k] = readValue(r, s.map);
    }
    return { ...out };
  }
  const out: Record<string, unknown> = {};
  for (const [name, f] of s.struct) out[name] = readValue(r, f);
  return out;
}

/** Encodes one value to a fresh buffer. */
export function encodeValue(s: Schema, v: unknown): Buffer {
  const w = new BinaryWriter(64);
  writeValue(w, s, v);
  return w.toBuffer();
}
