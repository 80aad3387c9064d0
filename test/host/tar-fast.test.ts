/**
 * The fast tar path of deploys: the SDK's packer (src/client/tar-pack.ts)
 * against the system `tar` both ways, the host's fast reader
 * (src/host/tar-reader.ts) and its fallback to node-tar, the refusals
 * (zip-slip, absolute names, a link in the target, links, size, truncation)
 * and an archive extracted while its parts arrive.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { packTree } from '../../src/client/tar-pack.js';
import { walkLocal } from '../../src/client/transfer.js';
import { extractArchive, extractArchiveParts } from '../../src/host/archive.js';
import { NotUstar, readUstar } from '../../src/host/tar-reader.js';
import { encodeEntry, TAR_END, type TarEntryInput, tarPadding } from '../../src/protocol/index.js';
import { cleanup, rejectsKind, tempDir } from './helpers.js';

const LONG_DIR = `deep/${'d'.repeat(120)}`;
const LONG_FILE = `${LONG_DIR}/${'f'.repeat(130)}.txt`;

/** Relative path → [mode, content] of every file, and the directories, below `dir`. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string) => {
    for (const e of (await readdir(abs, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out[`${r}/`] = 'dir';
        await walk(join(abs, e.name), r);
      } else {
        const st = await stat(join(abs, e.name));
        out[r] = `${(st.mode & 0o777).toString(8)} ${(await readFile(join(abs, e.name))).toString('hex')}`;
      }
    }
  };
  await walk(dir, '');
  return out;
}

async function pack(src: string, file: string): Promise<void> {
  const tree = await walkLocal(src);
  await pipeline(async function* () {
    for await (const c of packTree(src, tree.dirs, tree.files)) yield c.data;
  }, createWriteStream(file));
}

/** An archive of hand-made entries (name, content), for the hostile cases. */
async function craft(file: string, entries: [string, string][]): Promise<void> {
  const parts: Buffer[] = [];
  for (const [name, content] of entries) {
    const data = Buffer.from(content);
    const e: TarEntryInput = { name, type: 'file', size: data.length, mode: 0o644, mtimeMs: 0 };
    const head = Buffer.alloc(2048);
    parts.push(head.subarray(0, encodeEntry(head, 0, e)), data, Buffer.alloc(tarPadding(data.length)));
  }
  parts.push(TAR_END);
  await writeFile(file, Buffer.concat(parts));
}

const limits = { maxBytes: 1 << 20 };

/** A large entry's stream, read to its end. */
async function drain(_e: unknown, s: NodeJS.ReadableStream): Promise<void> {
  s.resume();
  await once(s, 'end');
}

describe('fast tar path (ustar packer and reader)', () => {
  let dir: string;
  let src: string;
  let expected: Record<string, string>;

  before(async () => {
    dir = await tempDir('outpost-tar-');
    src = join(dir, 'src');
    await mkdir(join(src, LONG_DIR), { recursive: true });
    await mkdir(join(src, 'empty'));
    await writeFile(join(src, 'a.txt'), 'alpha\n', { mode: 0o640 });
    await writeFile(join(src, 'exec.sh'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(join(src, 'zero'), '');
    await writeFile(join(src, 'ünï.txt'), 'u');
    await writeFile(join(src, LONG_FILE), 'long');
    await writeFile(join(src, 'big.bin'), Buffer.alloc(300 * 1024, 9)); // streams, not batched
    expected = await snapshot(src);
  });
  after(cleanup);

  it('packs a tree the system tar lists and extracts identically, and reads it back without node-tar', async () => {
    const file = join(dir, 'ours.tar');
    await pack(src, file);
    const listed = execFileSync('tar', ['tf', file], { encoding: 'utf8' }).trim().split('\n');
    assert.ok(listed.includes(LONG_FILE), 'a 250-character name is listed whole');
    const bySystem = join(dir, 'by-system');
    await mkdir(bySystem);
    execFileSync('tar', ['xf', file, '-C', bySystem]);
    assert.deepEqual(await snapshot(bySystem), expected);
    // The fast reader knows every entry of it (NotUstar would send it to node-tar).
    let files = 0;
    const ended = await readUstar(
      file,
      { dir: () => {}, accept: () => files++, small: () => {}, large: drain },
      { smallMax: 256 * 1024 },
    );
    assert.equal(ended, true);
    assert.equal(files, 6);
    const target = join(dir, 'by-host');
    const times = new Map([['a.txt', 1_600_000_000_123]]);
    const r = await extractArchive(file, target, { ...limits, times });
    assert.deepEqual(r, { files: 6, directories: 3, bytes: 6 + 10 + 0 + 1 + 4 + 300 * 1024 });
    assert.deepEqual(await snapshot(target), expected);
    assert.equal(Math.round((await stat(join(target, 'a.txt'))).mtimeMs), 1_600_000_000_123);
  });

  it('extracts what the system tar writes (GNU long names through node-tar, pax and ustar by the fast reader)', async () => {
    for (const format of ['gnu', 'pax', 'ustar']) {
      const file = join(dir, `system-${format}.tar`);
      // ustar cannot hold the long file: that format gets the tree without it.
      const names = format === 'ustar' ? ['a.txt', 'exec.sh', 'zero', 'empty', 'big.bin'] : ['.'];
      execFileSync('tar', ['cf', file, `--format=${format}`, '-C', src, ...names]);
      const target = join(dir, `from-${format}`);
      await extractArchive(file, target, limits);
      const want =
        format === 'ustar'
          ? Object.fromEntries(Object.entries(expected).filter(([k]) => names.some((n) => k.startsWith(n))))
          : expected;
      assert.deepEqual(await snapshot(target), want, format);
    }
    const gnu = readUstar(
      join(dir, 'system-gnu.tar'),
      { dir: () => {}, accept: () => {}, small: () => {}, large: drain },
      { smallMax: 256 * 1024 },
    );
    await assert.rejects(gnu, NotUstar);
  });

  it('refuses ../, absolute names, a link in the target, link entries, oversize and truncation, leaving no new target', async () => {
    const cases: [string, [string, string][], RegExp][] = [
      [
        'dotdot',
        [
          ['ok.txt', 'fine'],
          ['../escape.txt', 'x'],
        ],
        /contains \.\./,
      ],
      ['nested', [['a/../../escape.txt', 'x']], /contains \.\./],
      ['absolute', [['/tmp/escape.txt', 'x']], /is absolute/],
    ];
    for (const [name, entries, re] of cases) {
      const file = join(dir, `${name}.tar`);
      await craft(file, entries);
      await rejectsKind(extractArchive(file, join(dir, `t-${name}`), limits), 'InvalidArgument', re);
      await assert.rejects(stat(join(dir, `t-${name}`)), { code: 'ENOENT' });
    }
    await assert.rejects(stat(join(dir, 'escape.txt')), { code: 'ENOENT' });
    // An existing target with a link to outside: entries below the link are refused.
    const existing = join(dir, 'existing');
    await mkdir(join(dir, 'outside'));
    await mkdir(existing);
    await symlink(join(dir, 'outside'), join(existing, 'link'));
    const through = join(dir, 'through.tar');
    await craft(through, [['link/x.txt', 'x']]);
    await rejectsKind(
      extractArchive(through, existing, limits),
      'InvalidArgument',
      /symbolic link in the target/,
    );
    assert.deepEqual(await readdir(join(dir, 'outside')), []);
    // A symbolic link entry: not known to the fast reader, refused by node-tar's pass.
    const links = join(dir, 'links.tar');
    execFileSync('tar', ['cf', links, '--format=ustar', '-C', existing, 'link']);
    await rejectsKind(extractArchive(links, join(dir, 't-link'), limits), 'InvalidArgument', /symbolic link/);
    // Over MaxExtractedSize: refused before the entry that passes it is written.
    const ours = join(dir, 'ours.tar');
    await pack(src, ours);
    await rejectsKind(extractArchive(ours, join(dir, 't-big'), { maxBytes: 1000 }), 'TooLarge');
    await assert.rejects(stat(join(dir, 't-big')), { code: 'ENOENT' });
    // Cut in the middle of an entry.
    const cut = join(dir, 'cut.tar');
    await craft(cut, [['a.txt', 'x'.repeat(2000)]]);
    await truncate(cut, 1024);
    await rejectsKind(
      extractArchive(cut, join(dir, 't-cut'), limits),
      'InvalidArgument',
      /middle of an entry/,
    );
  });

  it('extracts an archive whose parts arrive while it runs, deleting each part', async () => {
    const whole = join(dir, 'whole.tar');
    await pack(src, whole);
    const bytes = await readFile(whole);
    // Cut at entry boundaries: after the first header block's entry and after the big file.
    const base = join(dir, 'parts', 'p.tar');
    await mkdir(join(dir, 'parts'));
    const target = join(dir, 'from-parts');
    const run = extractArchiveParts(base, target, limits);
    const cutAt = [0, 512, bytes.length - 1024, bytes.length];
    for (let i = 0; i + 1 < cutAt.length; i++) {
      await new Promise((r) => setTimeout(r, 20));
      // Whole parts only: written aside, then renamed (as the SDK's write stream does).
      await writeFile(`${base}.${i}.tmp`, bytes.subarray(cutAt[i], cutAt[i + 1]));
      await rename(`${base}.${i}.tmp`, `${base}.${i}`);
    }
    await run;
    assert.deepEqual(await snapshot(target), expected);
    assert.deepEqual(await readdir(join(dir, 'parts')), []);
    // A part that is never sent: the job is canceled, and no target appears.
    const ac = new AbortController();
    const stuck = extractArchiveParts(join(dir, 'parts', 'never.tar'), join(dir, 't-never'), {
      ...limits,
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(stuck, { name: 'AbortError' });
    await assert.rejects(stat(join(dir, 't-never')), { code: 'ENOENT' });
  });
});
