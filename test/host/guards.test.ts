/**
 * The preserve-root guards (PROTOCOL.md §5.2): deleting, clearing or moving
 * a file-system root or an AllowedRoots entry itself — or replacing one as
 * a Move/CopyFile target — is AccessDenied however the path is spelled, and
 * the entry is untouched. Every test keeps AllowedRoots at its own temp
 * directory, so even a broken guard meets the allowed-roots check before
 * anything outside could be reached; the `/` cases assert that the guard,
 * not that check, refused (by its message), and never let a recursive
 * operation run without both in place.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HostDispatcher } from '../../src/host/dispatcher.js';
import { cleanup, rejectsKind, tempHost } from './helpers.js';

after(cleanup);

const ROOT_MESSAGE = /refusing to \w+ a file-system root/;
const ALLOWED_MESSAGE = /refusing to \w+ an allowed root/;

/** A temp dir with an allowed root `root` (holding files) and the product's base `root/product`. */
async function fenced() {
  const t = await tempHost();
  const root = join(t.dir, 'root');
  const base = join(root, 'product');
  await mkdir(join(base, 'work'), { recursive: true });
  await writeFile(join(root, 'keep.txt'), 'keep');
  await writeFile(join(base, 'work', 'a.txt'), 'a');
  await symlink(root, join(base, 'root-link'));
  const { svc } = await tempHost({ rootPath: base, baseDirectory: base, allowedRoots: [root] });
  return { dir: t.dir, root, base, svc };
}

async function intact(root: string): Promise<void> {
  assert.equal(await readFile(join(root, 'keep.txt'), 'utf8'), 'keep');
  assert.deepEqual((await readdir(root)).sort(), ['keep.txt', 'product']);
  assert.equal(await readFile(join(root, 'product', 'work', 'a.txt'), 'utf8'), 'a');
}

describe('guards: file-system root', () => {
  const spellings = ['/', '//', '/./', '/..', '/tmp/../..'];

  it('DeleteDirectory("/") is refused as a root before the allowed-roots check', async () => {
    const { svc } = await tempHost();
    for (const p of spellings) {
      await rejectsKind(
        svc.call('DeleteDirectory', { path: p, recursive: true }),
        'AccessDenied',
        ROOT_MESSAGE,
      );
    }
  });

  it('every destructive command refuses "/", however spelled', async () => {
    const { dir, svc } = await tempHost();
    await writeFile(join(dir, 'f'), 'f');
    const calls = (p: string): [string, Promise<unknown>][] => [
      ['DeleteFile', svc.call('DeleteFile', { path: p })],
      ['DeleteFiles', svc.call('DeleteFiles', { paths: [join(dir, 'f'), p] })],
      ['ClearDirectory', svc.call('ClearDirectory', { path: p })],
      ['Move source', svc.call('Move', { source: p, target: join(dir, 'x'), overwrite: false })],
      ['Move target', svc.call('Move', { source: join(dir, 'f'), target: p, overwrite: true })],
      ['CopyFile target', svc.call('CopyFile', { source: join(dir, 'f'), target: p, overwrite: true })],
    ];
    for (const p of spellings) {
      for (const [what, call] of calls(p)) {
        await assert.rejects(call, (e: { kind?: string; message?: string }) => {
          assert.equal(e.kind, 'AccessDenied', `${what} ${p}`);
          assert.match(e.message ?? '', ROOT_MESSAGE, `${what} ${p}`);
          return true;
        });
      }
    }
    assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'f', 'DeleteFiles checks every path first');
  });

  it('a symlink to "/" is refused as the root it leads to', async () => {
    const { dir, svc } = await tempHost();
    await symlink('/', join(dir, 'slash'));
    await rejectsKind(svc.call('ClearDirectory', { path: 'slash' }), 'AccessDenied', ROOT_MESSAGE);
    await rejectsKind(svc.call('DeleteFile', { path: 'slash' }), 'AccessDenied', ROOT_MESSAGE);
    assert.ok((await stat(join(dir, 'slash'))).isDirectory(), 'the link is still there');
  });
});

describe('guards: an AllowedRoots entry itself', () => {
  it('ClearDirectory of the entry, or of ".." from the product root, leaves it intact', async () => {
    const { root, svc } = await fenced();
    for (const p of [root, `${root}/`, '..', '../', `${root}/product/..`, 'work/../..', 'root-link']) {
      await rejectsKind(svc.call('ClearDirectory', { path: p }), 'AccessDenied', ALLOWED_MESSAGE);
    }
    await intact(root);
  });

  it('DeleteDirectory of the entry fails although its parent is writable', async () => {
    const { root, svc } = await fenced();
    for (const recursive of [true, false]) {
      for (const p of [root, `${root}//`, '..', 'work/../../']) {
        await rejectsKind(
          svc.call('DeleteDirectory', { path: p, recursive }),
          'AccessDenied',
          ALLOWED_MESSAGE,
        );
      }
    }
    await intact(root);
  });

  it('DeleteFile, DeleteFiles, Move and CopyFile cannot remove or replace it', async () => {
    const { dir, root, svc } = await fenced();
    const move = (source: string, target: string) => svc.call('Move', { source, target, overwrite: true });
    await rejectsKind(svc.call('DeleteFile', { path: '..' }), 'AccessDenied', ALLOWED_MESSAGE);
    await rejectsKind(svc.call('DeleteFile', { path: 'root-link' }), 'AccessDenied', ALLOWED_MESSAGE);
    await rejectsKind(svc.call('DeleteFiles', { paths: ['work/a.txt', '..'] }), 'AccessDenied');
    await rejectsKind(move('..', 'work/moved'), 'AccessDenied', ALLOWED_MESSAGE);
    await rejectsKind(move(root, join(dir, 'elsewhere')), 'AccessDenied', ALLOWED_MESSAGE);
    await rejectsKind(move('work/a.txt', '..'), 'AccessDenied', ALLOWED_MESSAGE);
    await rejectsKind(
      svc.call('CopyFile', { source: 'work/a.txt', target: `${root}/`, overwrite: true }),
      'AccessDenied',
      ALLOWED_MESSAGE,
    );
    await intact(root);
  });

  it('what lies below the entry stays fully usable', async () => {
    const { root, base, svc } = await fenced();
    await svc.call('ClearDirectory', { path: '.' }); // the product root is not an allowed root
    assert.deepEqual(await readdir(base), []);
    await svc.call('CreateDirectory', { path: '../other/deep' });
    await svc.call('Move', { source: '../other', target: '../moved', overwrite: false });
    await svc.call('DeleteDirectory', { path: '../moved', recursive: true });
    await svc.call('DeleteFile', { path: '../keep.txt' });
    assert.deepEqual(await readdir(root), ['product']);
  });

  it('applies without AllowedRoots only to file-system roots', async () => {
    const t = await tempHost({ allowedRoots: null });
    await mkdir(join(t.dir, 'd', 'sub'), { recursive: true });
    await t.svc.call('ClearDirectory', { path: join(t.dir, 'd') });
    assert.deepEqual(await readdir(join(t.dir, 'd')), []);
    await t.svc.call('DeleteDirectory', { path: join(t.dir, 'd'), recursive: false });
    assert.deepEqual(await readdir(t.dir), []);
  });
});

describe('guards: AllowedRoots containment', () => {
  it('every path argument, and a working directory, must resolve inside a root', async () => {
    const { dir, base, svc } = await fenced();
    await mkdir(join(dir, 'outside'));
    await writeFile(join(dir, 'outside', 'o.txt'), 'o');
    await symlink(join(dir, 'outside'), join(base, 'out-link'));
    const checks: [string, Promise<unknown>][] = [
      ['FileExists', svc.call('FileExists', { path: join(dir, 'outside', 'o.txt') })],
      ['GetFileInfo via link', svc.call('GetFileInfo', { path: 'out-link/o.txt' })],
      ['CopyFile source', svc.call('CopyFile', { source: 'out-link/o.txt', target: 'c', overwrite: false })],
      [
        'CopyFile target',
        svc.call('CopyFile', { source: 'work/a.txt', target: '../../outside/c', overwrite: false }),
      ],
      ['SetMode', svc.call('SetMode', { path: 'out-link/o.txt', mode: 0o600 })],
      ['StartProcess cwd', startIn(svc, 'out-link')],
      ['StartProcess cwd abs', startIn(svc, join(dir, 'outside'))],
    ];
    for (const [what, call] of checks) {
      await assert.rejects(call, (e: { kind?: string }) => {
        assert.equal(e.kind, 'AccessDenied', what);
        return true;
      });
    }
    assert.deepEqual(await readdir(join(dir, 'outside')), ['o.txt']);
  });
});

function startIn(svc: HostDispatcher, workingDirectory: string): Promise<unknown> {
  return svc.call(
    'StartProcess',
    { fileName: 'true', args: [], workingDirectory, environment: {}, flags: 0 },
    77,
  );
}

describe('guards: SetMode never takes the owner’s rwx from a root (issue 18)', () => {
  it('refuses a mode without owner rwx on the product root, an allowed root, "/" and a directory holding one', async () => {
    const { root, base, svc } = await fenced();
    for (const [p, mode] of [
      ['.', 0],
      [base, 0o600],
      [root, 0o000],
      [join(base, 'root-link'), 0o055],
      ['/', 0],
    ] as const) {
      await rejectsKind(
        svc.call('SetMode', { path: p, mode }),
        'AccessDenied',
        p === '/' ? /outside the allowed roots|file-system root/ : /refusing to take the owner's permissions/,
      );
    }
    assert.equal((await stat(base)).mode & 0o700, 0o700);
    assert.equal((await stat(root)).mode & 0o700, 0o700);
  });

  it('any other path, and modes that keep owner rwx, are served', async () => {
    const { base, svc } = await fenced();
    await svc.call('SetMode', { path: 'work/a.txt', mode: 0 });
    assert.equal((await stat(join(base, 'work', 'a.txt'))).mode & 0o777, 0);
    await svc.call('SetMode', { path: 'work', mode: 0o700 });
    await svc.call('SetMode', { path: '.', mode: 0o750 });
    assert.equal((await stat(base)).mode & 0o777, 0o750);
    await svc.call('SetMode', { path: '.', mode: 0o755 });
  });

  it('the other products’ roots (productRoots) are protected too', async () => {
    const t = await tempHost();
    const other = join(t.dir, 'state', 'BuildMaster');
    await mkdir(other, { recursive: true });
    const { svc } = await tempHost({ allowedRoots: [t.dir], productRoots: [other] }, {}, {}, undefined);
    await rejectsKind(svc.call('SetMode', { path: other, mode: 0 }), 'AccessDenied', /the root/);
    await rejectsKind(
      svc.call('SetMode', { path: join(t.dir, 'state'), mode: 0 }),
      'AccessDenied',
      /holding/,
    );
  });
});

describe('a product root that cannot be used (issue 18)', () => {
  it('relative paths are refused naming the root; absolute ones served; a repaired root works at once', async () => {
    const t = await tempHost();
    const inTheWay = join(t.dir, 'in-the-way');
    await writeFile(inTheWay, 'x');
    const root = join(inTheWay, 'Otter');
    const { svc } = await tempHost({ rootPath: root, baseDirectory: root, allowedRoots: [t.dir] });
    const problem = svc.files.paths.checkRoot();
    assert.equal(problem?.kind, 'NotDirectory');
    const relative = /root path cannot be used/;
    await rejectsKind(svc.call('FileExists', { path: 'a' }), 'NotDirectory', relative);
    await rejectsKind(
      svc.call('StartProcess', {
        fileName: 'true',
        args: [],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
      'NotDirectory',
      relative,
    );
    assert.deepEqual(await svc.call('DirectoryExists', { path: t.dir }), { exists: true });
    await rm(inTheWay);
    assert.deepEqual(await svc.call('FileExists', { path: 'a' }), { exists: false });
    assert.equal((await stat(root)).isDirectory(), true, 'made on the next request');
  });
});
