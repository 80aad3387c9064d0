/**
 * The ustar codec (src/protocol/ustar.ts) alone: headers round-trip, long
 * names take the prefix field or a pax header, and whatever the fast reader
 * must not guess at is `unknown`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  decodeHeader,
  decodePax,
  encodeEntry,
  entryHeaderBytes,
  TAR_BLOCK,
  type TarEntryInput,
  tarPadding,
} from '../../src/protocol/index.js';

function encode(entry: TarEntryInput): Buffer {
  const buf = Buffer.alloc(entryHeaderBytes(entry));
  assert.equal(encodeEntry(buf, 0, entry), buf.length);
  return buf;
}

/** Decodes the header(s) of one entry as the host's reader does (pax first when present). */
function decodeOne(buf: Buffer) {
  const h = decodeHeader(buf, 0);
  if (h.kind !== 'pax') return h;
  const pax = decodePax(buf.subarray(TAR_BLOCK, TAR_BLOCK + h.size));
  assert.ok(pax);
  const next = decodeHeader(buf, TAR_BLOCK + h.size + tarPadding(h.size));
  assert.ok(next.kind === 'file' || next.kind === 'dir');
  const size = pax.has('size') ? Number(pax.get('size')) : next.size;
  return { ...next, name: pax.get('path') ?? next.name, size };
}

function reChecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

describe('ustar codec', () => {
  it('round-trips names, sizes, modes and times of files and directories', () => {
    const segment = fc.stringMatching(/^[a-zA-Z0-9 ._é-]{1,60}$/).filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(
        fc.array(segment, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.oneof(fc.integer({ min: 0, max: 2 ** 33 }), fc.constant(2 ** 33 + 1)),
        fc.integer({ min: 0, max: 0o7777 }),
        fc.integer({ min: 0, max: 4_000_000_000 }),
        (parts, dir, size, mode, secs) => {
          const name = dir ? `${parts.join('/')}/` : parts.join('/');
          const entry: TarEntryInput = {
            name,
            type: dir ? 'dir' : 'file',
            size: dir ? 0 : size,
            mode,
            mtimeMs: secs * 1000 + 999,
          };
          const h = decodeOne(encode(entry));
          assert.deepEqual(h, { kind: entry.type, name, size: entry.size, mode, mtime: secs });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('puts a long name in the prefix field when it splits at a slash, else in a pax header', () => {
    const split = `${'a'.repeat(120)}/${'b'.repeat(90)}`;
    assert.equal(entryHeaderBytes({ name: split, type: 'file', size: 1, mode: 0o644, mtimeMs: 0 }), 512);
    const long = `dir/${'c'.repeat(150)}`;
    const buf = encode({ name: long, type: 'file', size: 1, mode: 0o644, mtimeMs: 0 });
    assert.ok(buf.length > 512);
    assert.equal(decodeHeader(buf, 0).kind, 'pax');
    const h = decodeOne(buf);
    assert.ok(h.kind === 'file');
    assert.equal(h.name, long);
  });

  it('reports links, bad checksums, base-256 numbers and unknown pax keys as unknown', () => {
    const buf = encode({ name: 'x', type: 'file', size: 3, mode: 0o644, mtimeMs: 0 });
    const link = Buffer.from(buf);
    link[156] = 0x32; // '2': symbolic link
    assert.deepEqual(decodeHeader(link, 0), { kind: 'unknown', why: 'checksum' });
    reChecksum(link);
    assert.deepEqual(decodeHeader(link, 0), { kind: 'unknown', why: 'type 2' });
    const bad = Buffer.from(buf);
    bad[0] = 0x79;
    assert.equal(decodeHeader(bad, 0).kind, 'unknown');
    const b256 = Buffer.from(buf);
    b256[124] = 0x80;
    reChecksum(b256);
    assert.equal(decodeHeader(b256, 0).kind, 'unknown');
    assert.equal(decodePax(Buffer.from('30 GNU.sparse.map=0,1,2,3,4,5\n')), null);
    assert.equal(decodePax(Buffer.from('99 path=x\n')), null);
    assert.deepEqual([...decodePax(Buffer.from('11 path=ab\n'))!], [['path', 'ab']]);
    assert.deepEqual(decodeHeader(Buffer.alloc(512), 0), { kind: 'end' });
  });
});
