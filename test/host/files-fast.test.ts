/**
 * The synchronous fast paths of the file service (docs/BENCHMARKS.md, bugs
 * 5 and 6): small WriteAllBytes done in one go (temp + rename, parents made
 * only when the open fails), small ReadAllBytes, and the same guarantees as
 * the asynchronous paths — atomicity, no temp files left, error messages
 * naming the path. Run on the temp dir's file system (fsync in the thread
 * pool) and, where there is one, on /dev/shm (tmpfs: fsync inline). Every
 * test works in its own temp directory, which is also its allowedRoots.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HostDispatcher } from '../../src/host/dispatcher.js';
import { type FileServiceHooks, SMALL_READ, SMALL_WRITE } from '../../src/host/files.js';
import type { HostContext } from '../../src/host/types.js';
import { UNIX_EPOCH_TICKS } from '../../src/protocol/index.js';
import { cleanup, rejectsKind, tempHost } from './helpers.js';

after(cleanup);

/** The temp dir's file system, and tmpfs when the machine has /dev/shm. */
const BASES: { name: string; dir: string }[] = [{ name: 'the temp dir', dir: tmpdir() }];
if (process.platform === 'linux' && existsSync('/dev/shm')) BASES.push({ name: 'tmpfs', dir: '/dev/shm' });

const setup = (base = tmpdir(), hooks: FileServiceHooks = {}, over: Partial<HostContext> = {}) =>
  tempHost({ maxMessageSize: 4 * 1024 * 1024, ...over }, hooks, {}, base);

async function tempsIn(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true });
  return all.filter((n) => n.endsWith('.tmp'));
}

const write = (
  svc: HostDispatcher,
  p: string,
  data: Uint8Array,
  mode: number | null = null,
  ticks: bigint | null = null,
) => svc.call('WriteAllBytes', { path: p, contents: data, mode, lastWriteUtc: ticks });

for (const base of BASES) {
  describe(`WriteAllBytes, small, on ${base.name}`, () => {
    it('creates missing parents, applies mode and mtime, replaces and writes through links', async () => {
      const { dir, svc } = await setup(base.dir);
      const p = join(dir, 'a', 'b', 'c.txt');
      const ticks = 1_700_000_000n * 10_000_000n + 1_234_560n + UNIX_EPOCH_TICKS;
      await write(svc, p, Buffer.from('one'), 0o640, ticks);
      assert.equal(await readFile(p, 'utf8'), 'one');
      const { entry } = await svc.call('GetFileInfo', { path: p });
      assert.equal(entry?.mode, 0o100640);
      assert.equal(entry?.lastWriteUtc, ticks);

      // A replacement keeps the mode when none is given, and is a new inode (rename).
      const before = await stat(p);
      await write(svc, p, Buffer.from('two'));
      const after2 = await stat(p);
      assert.equal(await readFile(p, 'utf8'), 'two');
      assert.equal(after2.mode & 0o7777, 0o640);
      assert.notEqual(after2.ino, before.ino);

      // Through a symlink: the link's target is replaced, the link stays.
      await symlink(p, join(dir, 'link'));
      await write(svc, join(dir, 'link'), Buffer.from('three'));
      assert.equal(await readFile(p, 'utf8'), 'three');
      assert.ok((await lstat(join(dir, 'link'))).isSymbolicLink());

      // A dangling link inside the roots is replaced by the file itself.
      await symlink(join(dir, 'later.txt'), join(dir, 'dangling'));
      await write(svc, join(dir, 'dangling'), Buffer.from('four'));
      assert.ok((await lstat(join(dir, 'dangling'))).isFile());
      assert.equal(await readFile(join(dir, 'dangling'), 'utf8'), 'four');
      assert.deepEqual(await tempsIn(dir), []);
    });

    it('64 writes at once into one new directory all land, with no temp files', async () => {
      const { dir, svc } = await setup(base.dir);
      const sub = join(dir, 'new', 'deep');
      await Promise.all(
        Array.from({ length: 64 }, (_, i) => write(svc, join(sub, `f${i}`), Buffer.from(`file ${i}`), 0o644)),
      );
      const names = (await readdir(sub)).sort();
      assert.equal(names.length, 64);
      for (let i = 0; i < 64; i++) assert.equal(await readFile(join(sub, `f${i}`), 'utf8'), `file ${i}`);
      assert.deepEqual(await tempsIn(dir), []);
    });

    it('refuses a directory target and a file in the way, naming the path, leaving no temp', async () => {
      const { dir, svc } = await setup(base.dir);
      await mkdir(join(dir, 'd'));
      await writeFile(join(dir, 'file'), 'keep');
      await rejectsKind(
        write(svc, join(dir, 'd'), Buffer.from('x')),
        'IsDirectory',
        new RegExp(join(dir, 'd')),
      );
      await rejectsKind(
        write(svc, join(dir, 'file', 'child'), Buffer.from('x')),
        'NotDirectory',
        new RegExp(join(dir, 'file')),
      );
      await rejectsKind(write(svc, join(dir, 'file', 'a', 'b'), Buffer.from('x')), 'NotDirectory');
      assert.equal(await readFile(join(dir, 'file'), 'utf8'), 'keep');
      assert.deepEqual(await tempsIn(dir), []);
    });
  });
}

describe('WriteAllBytes atomicity, both paths', () => {
  for (const size of [0, 1000, SMALL_WRITE, SMALL_WRITE + 1]) {
    it(`${size} bytes: a failing rename leaves the target intact and removes the temp file`, async () => {
      let renames = 0;
      let tempSize = -1;
      const { dir, svc } = await setup(tmpdir(), {
        rename: async (from) => {
          renames++;
          tempSize = (await stat(from)).size; // the data was written before the rename
          throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        },
      });
      const p = join(dir, 'target.bin');
      await writeFile(p, 'original', { mode: 0o600 });
      await rejectsKind(
        write(svc, p, Buffer.alloc(size, 7), 0o644),
        'IOError',
        new RegExp(`IOError: ${p}: input/output error`),
      );
      assert.equal(renames, 1);
      assert.equal(tempSize, size);
      assert.equal(await readFile(p, 'utf8'), 'original');
      assert.equal((await stat(p)).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(dir), ['target.bin']);
    });
  }

  it('succeeds at both sizes with the real rename', async () => {
    const { dir, svc } = await setup();
    for (const size of [SMALL_WRITE, SMALL_WRITE + 1]) {
      const data = Buffer.alloc(size, size & 0xff);
      await write(svc, join(dir, `f${size}`), data, 0o600);
      assert.ok((await readFile(join(dir, `f${size}`))).equals(data));
    }
    assert.deepEqual(await tempsIn(dir), []);
  });
});

describe('ReadAllBytes, small', () => {
  it('reads at and past the synchronous limit, and through a symlink', async () => {
    const { dir, svc } = await setup();
    for (const size of [0, 1, SMALL_READ, SMALL_READ + 1]) {
      const data = Buffer.alloc(size, 3);
      await writeFile(join(dir, `f${size}`), data);
      const got = await svc.call('ReadAllBytes', { path: join(dir, `f${size}`) });
      assert.ok(Buffer.from(got.contents).equals(data), `size ${size}`);
    }
    await symlink(join(dir, 'f1'), join(dir, 'link'));
    assert.equal((await svc.call('ReadAllBytes', { path: join(dir, 'link') })).contents.length, 1);
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'f1', 'x') }), 'NotFound', /f1/);
  });

  it('still refuses files larger than the message limit', async () => {
    const { dir, svc } = await setup(tmpdir(), {}, { maxMessageSize: 1024 });
    await writeFile(join(dir, 'big'), Buffer.alloc(2048));
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'big') }), 'TooLarge', /2048 bytes/);
  });
});

describe('queries on the synchronous path', () => {
  it('GetFileInfo, FileExists and DirectoryExists never fail for a missing path', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'f'), 'x');
    assert.deepEqual(await svc.call('GetFileInfo', { path: join(dir, 'f', 'x') }), { entry: null });
    assert.deepEqual(await svc.call('GetFileInfo', { path: join(dir, 'nope') }), { entry: null });
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'f', 'x') }), { exists: false });
    assert.deepEqual(await svc.call('DirectoryExists', { path: join(dir, 'nope', 'x') }), {
      exists: false,
    });
    await symlink(join(dir, 'missing'), join(dir, 'dangling'));
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'dangling') }), { exists: false });
    await svc.call('DeleteFile', { path: join(dir, 'dangling') });
    assert.equal(existsSync(join(dir, 'dangling')), false);
  });
});
