/**
 * FileService: queries, directories, deletes, move/copy, whole-file reads and
 * writes, hashes and metadata. Every test works inside its own temp
 * directory, and the service's allowedRoots is that directory, so a bug can
 * not reach anything else.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HostDispatcher } from '../../src/host/dispatcher.js';
import type { FileServiceHooks } from '../../src/host/files.js';
import type { HostContext } from '../../src/host/types.js';
import { HASH_ALGORITHMS, UNIX_EPOCH_TICKS } from '../../src/protocol/index.js';
import { cleanup, rejectsKind, tempHost } from './helpers.js';

after(cleanup);

const setup = (over: Partial<HostContext> = {}, hooks: FileServiceHooks = {}) => tempHost(over, hooks);

async function tempsIn(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true });
  return all.filter((n) => n.endsWith('.tmp'));
}

function ticksOfNs(ns: bigint): bigint {
  return ns / 100n + UNIX_EPOCH_TICKS;
}

describe('the handler table', () => {
  it('rejects malformed arguments as InvalidArgument', async () => {
    const { svc } = await setup();
    await rejectsKind(svc.call('FileExists', null as any), 'InvalidArgument');
    await rejectsKind(svc.call('FileExists', { path: 42 } as any), 'InvalidArgument');
  });

  it('GetBaseWorkingDirectory is the base directory', async () => {
    const { dir, svc } = await setup();
    assert.deepEqual(await svc.call('GetBaseWorkingDirectory', {}), { path: dir });
  });

  it('GetEnvironmentVariable reads the host environment; null when unset', async () => {
    const { svc } = await setup();
    const name = `OUTPOST_TEST_${process.pid}`;
    process.env[name] = 'v=1 ünï';
    try {
      assert.deepEqual(await svc.call('GetEnvironmentVariable', { name }), { value: 'v=1 ünï' });
    } finally {
      delete process.env[name];
    }
    assert.deepEqual(await svc.call('GetEnvironmentVariable', { name }), { value: null });
  });
});

describe('FileExists / DirectoryExists', () => {
  it('answers booleans and never fails for missing paths', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'f.txt'), 'x');
    await mkdir(join(dir, 'd'));
    await symlink(join(dir, 'f.txt'), join(dir, 'link'));
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'f.txt') }), { exists: true });
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'd') }), { exists: false });
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'nope') }), { exists: false });
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'f.txt', 'under') }), {
      exists: false,
    });
    assert.deepEqual(await svc.call('FileExists', { path: join(dir, 'link') }), { exists: true });
    assert.deepEqual(await svc.call('DirectoryExists', { path: join(dir, 'd') }), { exists: true });
    assert.deepEqual(await svc.call('DirectoryExists', { path: join(dir, 'f.txt') }), { exists: false });
    assert.deepEqual(await svc.call('DirectoryExists', { path: join(dir, 'nope') }), { exists: false });
  });

  it('rejects empty paths and paths containing NUL', async () => {
    const { dir, svc } = await setup();
    await rejectsKind(svc.call('FileExists', { path: '' }), 'InvalidArgument', /empty/);
    await rejectsKind(svc.call('DirectoryExists', { path: `${dir}/a\0b` }), 'InvalidArgument', /NUL/);
  });
});

describe('GetFileInfo', () => {
  it('reports fullPath, size, sub-millisecond lastWriteUtc and the whole st_mode', async () => {
    const { dir, svc } = await setup();
    const f = join(dir, 'f.bin');
    await writeFile(f, Buffer.alloc(1234, 7));
    await chmod(f, 0o644);
    await utimes(f, 1_700_000_000, 1_700_000_000.1234567);
    const st = await stat(f, { bigint: true });
    const { entry } = await svc.call('GetFileInfo', { path: 'f.bin' });
    assert.ok(entry);
    assert.equal(entry.fullPath, f, 'absolute, resolved against the base directory');
    assert.equal(entry.isDirectory, false);
    assert.equal(entry.size, 1234);
    assert.equal(entry.mode, 0o100644, 'type bits included');
    assert.equal(entry.lastWriteUtc, ticksOfNs(st.mtimeNs));
    assert.notEqual(entry.lastWriteUtc % 10_000n, 0n, 'keeps sub-millisecond ticks');
  });

  it('describes directories, and symlinks as themselves (lstat)', async () => {
    const { dir, svc } = await setup();
    await mkdir(join(dir, 'd'));
    await chmod(join(dir, 'd'), 0o750);
    await symlink(join(dir, 'd'), join(dir, 'ln'));
    const d = (await svc.call('GetFileInfo', { path: join(dir, 'd') })).entry;
    assert.equal(d?.isDirectory, true);
    assert.equal(d?.mode, 0o040750);
    assert.equal(d?.fullPath, join(dir, 'd'));
    const ln = (await svc.call('GetFileInfo', { path: `${dir}/d/../ln` })).entry;
    assert.equal(ln?.isDirectory, false);
    assert.equal((ln?.mode ?? 0) & 0o170000, 0o120000, 'S_IFLNK');
    assert.equal(ln?.fullPath, join(dir, 'ln'), 'dots collapsed');
  });

  it('is null, not an error, for a missing path (and below a file)', async () => {
    const { dir, svc } = await setup();
    assert.deepEqual(await svc.call('GetFileInfo', { path: join(dir, 'a.txt') }), { entry: null });
    await writeFile(join(dir, 'f'), '');
    assert.deepEqual(await svc.call('GetFileInfo', { path: join(dir, 'f', 'x') }), { entry: null });
  });
});

describe('ListDirectory', () => {
  async function tree() {
    const s = await setup();
    const { dir } = s;
    await mkdir(join(dir, 'src', 'lib'), { recursive: true });
    await mkdir(join(dir, 'node_modules', 'x'), { recursive: true });
    await mkdir(join(dir, 'outside'));
    await writeFile(join(dir, 'a.txt'), 'a');
    await writeFile(join(dir, '.hidden'), 'h');
    await writeFile(join(dir, 'src', 'main.ts'), 'm');
    await writeFile(join(dir, 'src', 'lib', 'util.ts'), 'u');
    await writeFile(join(dir, 'src', 'lib', 'notes.txt'), 'n');
    await writeFile(join(dir, 'node_modules', 'x', 'index.js'), 'i');
    await writeFile(join(dir, 'outside', 'secret.txt'), 's');
    await symlink(join(dir, 'outside'), join(dir, 'linked'));
    return s;
  }
  /** Entry paths relative to `base`, with '/' separators. */
  const rel = (base: string, entries: { fullPath: string }[]) =>
    entries.map((e) => e.fullPath.slice(base.length + 1));
  const list = (
    svc: HostDispatcher,
    path: string,
    recursive: boolean,
    include: string[] = [],
    exclude: string[] = [],
  ) => svc.call('ListDirectory', { path, recursive, include, exclude });

  it('lists one level below the path (not the path itself), sorted, with full paths', async () => {
    const { dir, svc } = await tree();
    const { entries } = await list(svc, dir, false);
    assert.deepEqual(
      entries.map((e) => e.fullPath),
      ['.hidden', 'a.txt', 'linked', 'node_modules', 'outside', 'src'].map((n) => join(dir, n)),
    );
    const byName = new Map(entries.map((e) => [e.fullPath.slice(dir.length + 1), e]));
    assert.equal(byName.get('src')?.isDirectory, true);
    assert.equal((byName.get('src')?.mode ?? 0) & 0o170000, 0o040000);
    assert.equal(byName.get('linked')?.isDirectory, false, 'a symlink is listed as itself');
    assert.equal((byName.get('linked')?.mode ?? 0) & 0o170000, 0o120000);
    assert.equal(byName.get('a.txt')?.isDirectory, false);
    assert.equal((byName.get('a.txt')?.mode ?? 0) & 0o170000, 0o100000);
    assert.equal(byName.get('a.txt')?.size, 1);
    const st = await stat(join(dir, 'a.txt'), { bigint: true });
    assert.equal(byName.get('a.txt')?.lastWriteUtc, ticksOfNs(st.mtimeNs));
  });

  it('recurses with / separators and does not follow symlinked directories', async () => {
    const { dir, svc } = await tree();
    const names = rel(dir, (await list(svc, dir, true)).entries);
    assert.deepEqual(names, [
      '.hidden',
      'a.txt',
      'linked',
      'node_modules',
      'node_modules/x',
      'node_modules/x/index.js',
      'outside',
      'outside/secret.txt',
      'src',
      'src/lib',
      'src/lib/notes.txt',
      'src/lib/util.ts',
      'src/main.ts',
    ]);
    assert.ok(!names.includes('linked/secret.txt'));
  });

  it('filters with include globs (dot: true) and exclude wins and prunes', async () => {
    const { dir, svc } = await tree();
    const ts = rel(dir, (await list(svc, dir, true, ['**/*.ts'])).entries);
    assert.deepEqual(ts, ['src/lib/util.ts', 'src/main.ts']);
    const dot = rel(dir, (await list(svc, dir, false, ['.*'])).entries);
    assert.deepEqual(dot, ['.hidden']);
    const ex = rel(
      dir,
      (await list(svc, dir, true, ['**/*.ts', '**/*.txt'], ['src/lib/util.ts', 'outside'])).entries,
    );
    assert.deepEqual(ex, ['a.txt', 'src/lib/notes.txt', 'src/main.ts']);
    const pruned = rel(dir, (await list(svc, dir, true, [], ['node_modules'])).entries);
    assert.ok(!pruned.some((n) => n.startsWith('node_modules')), pruned.join());
    assert.ok(pruned.includes('src/lib/util.ts'));
  });

  it('lists a relative path: globs match relative to it, full paths join it', async () => {
    const { dir, svc } = await tree();
    const { entries } = await list(svc, 'src', true);
    assert.deepEqual(rel(join(dir, 'src'), entries), ['lib', 'lib/notes.txt', 'lib/util.ts', 'main.ts']);
    assert.equal(entries[0]?.fullPath, join(dir, 'src', 'lib'));
    const libOnly = await list(svc, 'src', true, ['lib/*.ts']);
    assert.deepEqual(
      libOnly.entries.map((e) => e.fullPath),
      [join(dir, 'src', 'lib', 'util.ts')],
    );
  });

  it('is NotFound / NotDirectory / InvalidArgument for bad targets and globs', async () => {
    const { dir, svc } = await tree();
    await rejectsKind(list(svc, join(dir, 'missing'), false), 'NotFound');
    await rejectsKind(list(svc, join(dir, 'a.txt'), false), 'NotDirectory');
    await rejectsKind(list(svc, dir, false, ['x'.repeat(70_000)]), 'InvalidArgument', /glob/);
  });

  it('stops with TooLarge when the result would exceed the message limit', async () => {
    const { dir, svc } = await setup({ maxMessageSize: 2048 });
    for (let i = 0; i < 100; i++) await writeFile(join(dir, `file-with-a-long-name-${i}.txt`), '');
    await rejectsKind(list(svc, dir, false), 'TooLarge', /2048/);
    const few = await list(svc, dir, false, ['file-with-a-long-name-1?.txt']);
    assert.equal(few.entries.length, 10);
  });
});

describe('CreateDirectory', () => {
  it('creates parents, accepts an existing directory, refuses files in the way', async () => {
    const { dir, svc } = await setup();
    await svc.call('CreateDirectory', { path: join(dir, 'a', 'b', 'c') });
    assert.ok((await stat(join(dir, 'a', 'b', 'c'))).isDirectory());
    await svc.call('CreateDirectory', { path: join(dir, 'a', 'b') });
    await writeFile(join(dir, 'f'), '');
    await rejectsKind(svc.call('CreateDirectory', { path: join(dir, 'f') }), 'AlreadyExists');
    await rejectsKind(svc.call('CreateDirectory', { path: join(dir, 'f', 'sub') }), 'NotDirectory');
  });
});

describe('DeleteFile / DeleteFiles', () => {
  it('deletes files, tolerates absent ones, refuses directories', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'f'), 'x');
    await mkdir(join(dir, 'd'));
    await svc.call('DeleteFile', { path: join(dir, 'f') });
    await assert.rejects(stat(join(dir, 'f')), { code: 'ENOENT' });
    await svc.call('DeleteFile', { path: join(dir, 'f') });
    await rejectsKind(svc.call('DeleteFile', { path: join(dir, 'd') }), 'IsDirectory');
  });

  it('deletes a symlink to a directory, not the directory', async () => {
    const { dir, svc } = await setup();
    await mkdir(join(dir, 'd'));
    await writeFile(join(dir, 'd', 'keep'), 'k');
    await symlink(join(dir, 'd'), join(dir, 'ln'));
    await svc.call('DeleteFile', { path: join(dir, 'ln') });
    await assert.rejects(lstat(join(dir, 'ln')), { code: 'ENOENT' });
    assert.equal(await readFile(join(dir, 'd', 'keep'), 'utf8'), 'k');
  });

  it('DeleteFiles deletes each, tolerates absent, validates all paths first', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'a'), '');
    await writeFile(join(dir, 'b'), '');
    await svc.call('DeleteFiles', { paths: [join(dir, 'a'), join(dir, 'gone'), 'b'] });
    assert.deepEqual(await readdir(dir), []);
    await writeFile(join(dir, 'c'), '');
    await rejectsKind(svc.call('DeleteFiles', { paths: [join(dir, 'c'), ''] }), 'InvalidArgument');
    assert.deepEqual(await readdir(dir), ['c'], 'nothing deleted when one path is invalid');
    await mkdir(join(dir, 'd'));
    await rejectsKind(svc.call('DeleteFiles', { paths: [join(dir, 'd')] }), 'IsDirectory');
  });
});

describe('DeleteDirectory', () => {
  it('handles absent, empty, non-empty, recursive and file targets', async () => {
    const { dir, svc } = await setup();
    const d = join(dir, 'd');
    await svc.call('DeleteDirectory', { path: d, recursive: false });
    await mkdir(join(d, 'sub'), { recursive: true });
    await writeFile(join(d, 'sub', 'f'), 'x');
    await rejectsKind(svc.call('DeleteDirectory', { path: d, recursive: false }), 'NotEmpty', /not empty/);
    await svc.call('DeleteDirectory', { path: d, recursive: true });
    await assert.rejects(stat(d), { code: 'ENOENT' });
    await mkdir(d);
    await svc.call('DeleteDirectory', { path: d, recursive: false });
    await assert.rejects(stat(d), { code: 'ENOENT' });
    await writeFile(join(dir, 'f'), '');
    await rejectsKind(svc.call('DeleteDirectory', { path: join(dir, 'f'), recursive: true }), 'NotDirectory');
  });

  it('does not delete through a symlink, nor what a link inside points to', async () => {
    const { dir, svc } = await setup();
    await mkdir(join(dir, 'keep'));
    await writeFile(join(dir, 'keep', 'k'), 'k');
    await mkdir(join(dir, 'd'));
    await symlink(join(dir, 'keep'), join(dir, 'd', 'ln'));
    await symlink(join(dir, 'keep'), join(dir, 'top-ln'));
    await rejectsKind(
      svc.call('DeleteDirectory', { path: join(dir, 'top-ln'), recursive: true }),
      'NotDirectory',
    );
    await svc.call('DeleteDirectory', { path: join(dir, 'd'), recursive: true });
    assert.equal(await readFile(join(dir, 'keep', 'k'), 'utf8'), 'k');
  });
});

describe('ClearDirectory', () => {
  it('removes everything inside (more than one batch) and keeps the directory', async () => {
    const { dir, svc } = await setup();
    const d = join(dir, 'd');
    await mkdir(join(d, 'sub', 'deep'), { recursive: true });
    await mkdir(join(dir, 'keep'));
    await writeFile(join(dir, 'keep', 'k'), 'k');
    await symlink(join(dir, 'keep'), join(d, 'ln'));
    await writeFile(join(d, '.dot'), '');
    await writeFile(join(d, 'sub', 'deep', 'f'), '');
    await Promise.all(Array.from({ length: 1100 }, (_, i) => writeFile(join(d, `f${i}`), '')));
    await svc.call('ClearDirectory', { path: d });
    assert.deepEqual(await readdir(d), []);
    assert.equal(await readFile(join(dir, 'keep', 'k'), 'utf8'), 'k');
  });

  it('creates a missing directory and refuses a file', async () => {
    const { dir, svc } = await setup();
    await svc.call('ClearDirectory', { path: join(dir, 'new', 'dir') });
    assert.ok((await stat(join(dir, 'new', 'dir'))).isDirectory());
    await writeFile(join(dir, 'f'), '');
    await rejectsKind(svc.call('ClearDirectory', { path: join(dir, 'f') }), 'NotDirectory');
  });
});

describe('Move', () => {
  it('moves files and directories, creating destination parents', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'a'), 'A');
    await svc.call('Move', {
      source: join(dir, 'a'),
      target: join(dir, 'x', 'y', 'b'),
      overwrite: false,
    });
    assert.equal(await readFile(join(dir, 'x', 'y', 'b'), 'utf8'), 'A');
    await assert.rejects(stat(join(dir, 'a')), { code: 'ENOENT' });
    await svc.call('Move', { source: join(dir, 'x'), target: join(dir, 'z'), overwrite: false });
    assert.equal(await readFile(join(dir, 'z', 'y', 'b'), 'utf8'), 'A');
    await svc.call('Move', { source: join(dir, 'z'), target: join(dir, 'z'), overwrite: false });
    assert.ok((await stat(join(dir, 'z'))).isDirectory(), 'moving onto itself is a no-op');
  });

  it('honours overwrite and never replaces a directory', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'a'), 'A');
    await writeFile(join(dir, 'b'), 'B');
    await mkdir(join(dir, 'd'));
    const move = (s: string, d: string, overwrite: boolean) =>
      svc.call('Move', { source: join(dir, s), target: join(dir, d), overwrite });
    await rejectsKind(move('a', 'b', false), 'AlreadyExists', new RegExp(join(dir, 'b')));
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), 'A');
    await rejectsKind(move('a', 'd', true), 'IsDirectory');
    await rejectsKind(move('d', 'b', true), 'AlreadyExists');
    await move('a', 'b', true);
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'A');
    await rejectsKind(move('missing', 'c', false), 'NotFound', /missing/);
    await rejectsKind(move('d', 'd/inner', false), 'InvalidArgument');
  });

  it('falls back to copy + delete across devices (EXDEV), files and trees', async () => {
    let exdev = 0;
    const hooks: FileServiceHooks = {
      rename: async (from, to) => {
        if (!from.endsWith('.tmp')) {
          exdev++;
          throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
        }
        const { rename } = await import('node:fs/promises');
        await rename(from, to);
      },
    };
    const { dir, svc } = await setup({}, hooks);
    const f = join(dir, 'f.sh');
    await writeFile(f, 'echo hi', { mode: 0o751 });
    await utimes(f, 1_600_000_000, 1_600_000_000.5);
    await writeFile(join(dir, 'old'), 'old');
    await svc.call('Move', { source: f, target: join(dir, 'old'), overwrite: true });
    assert.equal(exdev, 1);
    assert.equal(await readFile(join(dir, 'old'), 'utf8'), 'echo hi');
    const st = await stat(join(dir, 'old'));
    assert.equal(st.mode & 0o777, 0o751);
    assert.equal(st.mtimeMs, 1_600_000_000_500);
    await assert.rejects(stat(f), { code: 'ENOENT' });

    const t = join(dir, 'tree');
    await mkdir(join(t, 'sub'), { recursive: true });
    await writeFile(join(t, 'sub', 'x.txt'), 'x');
    await symlink('sub/x.txt', join(t, 'ln'));
    await svc.call('Move', { source: t, target: join(dir, 'other', 'tree2'), overwrite: false });
    assert.equal(exdev, 2);
    assert.equal(await readFile(join(dir, 'other', 'tree2', 'sub', 'x.txt'), 'utf8'), 'x');
    assert.equal(await readlink(join(dir, 'other', 'tree2', 'ln')), 'sub/x.txt');
    await assert.rejects(stat(t), { code: 'ENOENT' });
    assert.deepEqual(await tempsIn(dir), []);
  });
});

describe('CopyFile', () => {
  it('copies atomically, preserving mode and mtime, creating parents', async () => {
    const { dir, svc } = await setup();
    const src = join(dir, 's.bin');
    await writeFile(src, 'payload', { mode: 0o604 });
    await utimes(src, 1_650_000_000, 1_650_000_000.25);
    const dst = join(dir, 'p', 'q', 'd.bin');
    await svc.call('CopyFile', { source: src, target: dst, overwrite: false });
    assert.equal(await readFile(dst, 'utf8'), 'payload');
    const st = await stat(dst);
    assert.equal(st.mode & 0o777, 0o604);
    assert.equal(st.mtimeMs, 1_650_000_000_250);
    assert.deepEqual(await tempsIn(dir), []);
  });

  it('handles overwrite, directories and missing sources', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'a'), 'A');
    await writeFile(join(dir, 'b'), 'B');
    await mkdir(join(dir, 'd'));
    const copy = (s: string, d: string, overwrite: boolean) =>
      svc.call('CopyFile', { source: join(dir, s), target: join(dir, d), overwrite });
    await rejectsKind(copy('a', 'b', false), 'AlreadyExists');
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'B');
    await copy('a', 'b', true);
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'A');
    await rejectsKind(copy('d', 'e', true), 'IsDirectory');
    await rejectsKind(copy('a', 'd', true), 'IsDirectory');
    await rejectsKind(copy('missing', 'e', true), 'NotFound', /missing/);
  });
});

describe('ReadAllBytes', () => {
  it('reads a file and refuses oversized files, directories and missing paths', async () => {
    const { dir, svc } = await setup({ maxMessageSize: 64 * 1024 });
    await writeFile(join(dir, 'small'), 'hello');
    assert.equal(
      Buffer.from((await svc.call('ReadAllBytes', { path: join(dir, 'small') })).contents).toString(),
      'hello',
    );
    await writeFile(join(dir, 'empty'), '');
    assert.equal((await svc.call('ReadAllBytes', { path: join(dir, 'empty') })).contents.length, 0);
    await writeFile(join(dir, 'big'), Buffer.alloc(64 * 1024));
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'big') }), 'TooLarge', /65536 bytes/);
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'nope') }), 'NotFound');
    await mkdir(join(dir, 'd'));
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'd') }), 'IsDirectory');
  });

  it('refuses a FIFO instead of blocking on it', async () => {
    const { dir, svc } = await setup();
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await rejectsKind(svc.call('ReadAllBytes', { path: join(dir, 'fifo') }), 'InvalidArgument', /regular/);
    await rejectsKind(
      svc.call('OpenFile', { path: join(dir, 'fifo'), fileMode: 3, access: 1 }),
      'InvalidArgument',
    );
  });
});

describe('WriteAllBytes', () => {
  const ticksFor = (sec: number, subTicks: bigint) => BigInt(sec) * 10_000_000n + subTicks + UNIX_EPOCH_TICKS;

  it('writes a new file with mode 0644 regardless of umask, creating parents', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'n', 'e', 'w.txt');
    const old = process.umask(0o077);
    try {
      await svc.call('WriteAllBytes', {
        path: p,
        contents: Buffer.from('new'),
        mode: null,
        lastWriteUtc: null,
      });
    } finally {
      process.umask(old);
    }
    assert.equal(await readFile(p, 'utf8'), 'new');
    assert.equal((await stat(p)).mode & 0o7777, 0o644);
    assert.deepEqual(await tempsIn(dir), []);
  });

  it('applies mode and a sub-millisecond lastWriteTime', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'f');
    const ticks = ticksFor(1_700_000_000, 1_234_560n);
    await svc.call('WriteAllBytes', {
      path: p,
      contents: new Uint8Array([1, 2, 3]),
      mode: 0o600,
      lastWriteUtc: ticks,
    });
    const { entry } = await svc.call('GetFileInfo', { path: p });
    assert.equal(entry?.mode, 0o100600);
    assert.equal(entry?.size, 3);
    assert.equal(entry?.lastWriteUtc, ticks, 'microsecond-aligned ticks round-trip exactly');
  });

  it('keeps the mode of the file it replaces and writes through symlinks', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'cfg');
    await writeFile(p, 'old', { mode: 0o640 });
    await symlink(p, join(dir, 'cfg-link'));
    await svc.call('WriteAllBytes', {
      path: join(dir, 'cfg-link'),
      contents: Buffer.from('v2'),
      mode: null,
      lastWriteUtc: null,
    });
    assert.equal(await readFile(p, 'utf8'), 'v2');
    assert.equal((await stat(p)).mode & 0o777, 0o640);
    assert.ok((await lstat(join(dir, 'cfg-link'))).isSymbolicLink(), 'the link stays a link');
    await svc.call('WriteAllBytes', { path: p, contents: new Uint8Array(0), mode: null, lastWriteUtc: null });
    assert.equal((await stat(p)).size, 0);
  });

  it('keeps the owner of a replaced file when running as root', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'owned');
    await writeFile(p, 'old');
    const asRoot = process.getuid?.() === 0;
    if (asRoot) await chown(p, 1234, 2345);
    const before = await stat(p);
    await svc.call('WriteAllBytes', {
      path: p,
      contents: Buffer.from('new'),
      mode: null,
      lastWriteUtc: null,
    });
    const st = await stat(p);
    assert.equal(await readFile(p, 'utf8'), 'new');
    assert.equal(st.uid, before.uid);
    assert.equal(st.gid, before.gid);
    assert.notEqual(st.ino, before.ino, 'replaced by rename, not rewritten in place');
  });

  it('refuses directories and parents that are files, leaving no temp files', async () => {
    const { dir, svc } = await setup();
    await mkdir(join(dir, 'd'));
    await writeFile(join(dir, 'file'), 'keep');
    const w = (p: string) =>
      svc.call('WriteAllBytes', { path: p, contents: Buffer.from('x'), mode: null, lastWriteUtc: null });
    await rejectsKind(w(join(dir, 'd')), 'IsDirectory');
    await rejectsKind(w(join(dir, 'file', 'child')), 'NotDirectory');
    await rejectsKind(w(join(dir, 'file', 'a', 'b')), 'NotDirectory');
    assert.equal(await readFile(join(dir, 'file'), 'utf8'), 'keep');
    assert.deepEqual(await tempsIn(dir), []);
    await rejectsKind(
      svc.call('WriteAllBytes', {
        path: join(dir, 'm'),
        contents: Buffer.from('x'),
        mode: 0o200000,
        lastWriteUtc: null,
      }),
      'InvalidArgument',
    );
  });

  it('is atomic: a failure after the temp file was written leaves the target intact and no temp', async () => {
    let renames = 0;
    const { dir, svc } = await setup(
      {},
      {
        rename: async () => {
          renames++;
          throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        },
      },
    );
    const p = join(dir, 'target.txt');
    await writeFile(p, 'original', { mode: 0o600 });
    await rejectsKind(
      svc.call('WriteAllBytes', {
        path: p,
        contents: Buffer.alloc(100_000, 1),
        mode: 0o644,
        lastWriteUtc: null,
      }),
      'IOError',
      new RegExp(`IOError: ${p}: input/output error`),
    );
    assert.equal(renames, 1, 'the failure happened at the final rename');
    assert.equal(await readFile(p, 'utf8'), 'original');
    assert.equal((await stat(p)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['target.txt']);
  });
});

describe('GetFileHash', () => {
  it('hashes by algorithm name (sha256, sha1, md5) as lower-case hex', async () => {
    const { dir, svc } = await setup();
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 'abc');
    await writeFile(join(dir, 'f'), data);
    for (const name of HASH_ALGORITHMS) {
      const { hash } = await svc.call('GetFileHash', { path: join(dir, 'f'), algorithm: name });
      assert.equal(hash, createHash(name).update(data).digest('hex'), name);
      assert.match(hash, /^[0-9a-f]+$/);
    }
    const sha = await svc.call('GetFileHash', { path: join(dir, 'f'), algorithm: 'sha256' });
    assert.equal(sha.hash.length, 64);
  });

  it('rejects unknown algorithms, directories and missing files', async () => {
    const { dir, svc } = await setup();
    await writeFile(join(dir, 'f'), 'x');
    await rejectsKind(
      svc.call('GetFileHash', { path: join(dir, 'f'), algorithm: 'sha512' }),
      'InvalidArgument',
      /algorithm/,
    );
    await rejectsKind(
      svc.call('GetFileHash', { path: join(dir, 'f'), algorithm: 'SHA256' }),
      'InvalidArgument',
    );
    await rejectsKind(svc.call('GetFileHash', { path: dir, algorithm: 'sha1' }), 'IsDirectory');
    await rejectsKind(svc.call('GetFileHash', { path: join(dir, 'no'), algorithm: 'md5' }), 'NotFound');
  });
});

describe('SetLastWriteTime / SetMode', () => {
  it('sets the modification time, to the microsecond', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'f');
    await writeFile(p, '');
    // Microsecond-aligned ticks round-trip exactly; others round to the nearest microsecond.
    for (const [ticks, expected] of [
      [638_000_000_000_123_450n, 638_000_000_000_123_450n],
      [638_000_000_000_123_456n, 638_000_000_000_123_460n],
      [638_000_000_000_123_454n, 638_000_000_000_123_450n],
      [UNIX_EPOCH_TICKS + 9_999_999n, UNIX_EPOCH_TICKS + 10_000_000n],
    ] as const) {
      await svc.call('SetLastWriteTime', { path: p, lastWriteUtc: ticks });
      const st = await stat(p, { bigint: true });
      assert.equal(ticksOfNs(st.mtimeNs), expected);
    }
    const ticks = 638_000_000_000_123_456n;
    await rejectsKind(
      svc.call('SetLastWriteTime', { path: join(dir, 'no'), lastWriteUtc: ticks }),
      'NotFound',
    );
    await rejectsKind(svc.call('SetLastWriteTime', { path: p, lastWriteUtc: -1n }), 'InvalidArgument');
  });

  it('sets permission bits', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'f');
    await writeFile(p, '');
    await svc.call('SetMode', { path: p, mode: 0o4750 });
    assert.equal((await stat(p)).mode & 0o7777, 0o4750);
    await svc.call('SetMode', { path: p, mode: 0o600 });
    assert.equal((await svc.call('GetFileInfo', { path: p })).entry?.mode, 0o100600);
    await svc.call('SetMode', { path: p, mode: 0o100640 });
    assert.equal((await stat(p)).mode & 0o7777, 0o640, 'a full st_mode is taken, its type bits ignored');
    await rejectsKind(svc.call('SetMode', { path: p, mode: 0o200000 }), 'InvalidArgument');
    await rejectsKind(svc.call('SetMode', { path: p, mode: -1 }), 'InvalidArgument');
    await rejectsKind(svc.call('SetMode', { path: join(dir, 'no'), mode: 0o600 }), 'NotFound');
  });
});
