/**
 * Path resolution, allowedRoots enforcement (including symlink escapes),
 * the errno → wire-kind table, and a property test that no input makes the
 * file service throw anything but a HostError.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path, { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { HostDispatcher } from '../../src/host/dispatcher.js';
import { FS_ERROR_TABLE, fsError, pathError } from '../../src/host/fs-errors.js';
import { absolutePath, isFilesystemRoot, isInside, realLocationSync } from '../../src/host/paths.js';
import { type HostContext, HostError } from '../../src/host/types.js';
import {
  type ErrorKindName,
  FileAccess,
  FileMode,
  PRODUCT_COMMANDS,
  type ProductCommand,
} from '../../src/protocol/index.js';
import { cleanup, RecordingChannel, rejectsKind, settingsFor, tempDir } from './helpers.js';

after(cleanup);

const context = settingsFor;
const hostOf = (ctx: HostContext) => new HostDispatcher(ctx, new RecordingChannel());
/** The file commands of the catalog: contract codes 1–20 and the DeleteFiles extension (21). */
const FILE_COMMANDS = (Object.keys(PRODUCT_COMMANDS) as ProductCommand[]).filter(
  (n) => PRODUCT_COMMANDS[n].code >= 1 && PRODUCT_COMMANDS[n].code <= 21,
);

describe('fs-errors', () => {
  it('maps errno codes to wire kinds with messages naming the path', () => {
    const cases: [string, ErrorKindName][] = [
      ['ENOENT', 'NotFound'],
      ['EEXIST', 'AlreadyExists'],
      ['EACCES', 'AccessDenied'],
      ['EPERM', 'AccessDenied'],
      ['EISDIR', 'IsDirectory'],
      ['ENOTDIR', 'NotDirectory'],
      ['ENOTEMPTY', 'NotEmpty'],
      ['ENOSPC', 'IOError'],
      ['EIO', 'IOError'],
      ['EROFS', 'IOError'],
      ['EMFILE', 'IOError'],
      ['ELOOP', 'IOError'],
      ['ENOEXEC', 'InvalidArgument'],
      ['E2BIG', 'TooLarge'],
      ['ENOMEM', 'IOError'],
      ['ENAMETOOLONG', 'InvalidArgument'],
      ['EINVAL', 'InvalidArgument'],
      ['EFBIG', 'TooLarge'],
      ['ENOTSUP', 'Unsupported'],
    ];
    for (const [code, kind] of cases) {
      const e = fsError(Object.assign(new Error('x'), { code }), '/tmp/x/a.txt');
      assert.equal(e.kind, kind, code);
      assert.ok(e.message.startsWith(`${kind}: /tmp/x/a.txt: `), e.message);
    }
    assert.equal(
      fsError(Object.assign(new Error('x'), { code: 'ENOENT' }), '/tmp/x/a.txt').message,
      'NotFound: /tmp/x/a.txt: no such file or directory',
    );
    assert.ok(Object.keys(FS_ERROR_TABLE).length >= cases.length);
  });

  it('maps unknown errors to IOError and passes HostErrors through', () => {
    const odd = fsError(Object.assign(new Error('weird'), { code: 'EWHATEVER' }), '/p');
    assert.equal(odd.kind, 'IOError');
    assert.match(odd.message, /^IOError: \/p: EWHATEVER: weird$/);
    assert.equal(fsError('a string', '/p').kind, 'IOError');
    const he = pathError('TooLarge', '/q', 'big');
    assert.equal(fsError(he, '/other'), he);
  });
});

describe('path helpers', () => {
  it('isInside compares whole components', () => {
    assert.ok(isInside('/a/b', '/a'));
    assert.ok(isInside('/a', '/a'));
    assert.ok(!isInside('/ab', '/a'));
    assert.ok(!isInside('/', '/a'));
    assert.ok(isInside('/a/..b', '/a'), 'a name starting with two dots is still inside');
    assert.ok(!isInside('/a/../b', '/a/x'));
  });

  it('isFilesystemRoot recognises roots only', () => {
    assert.ok(isFilesystemRoot(path.parse(process.cwd()).root));
    assert.ok(!isFilesystemRoot(process.cwd()));
    assert.ok(path.win32.parse('C:\\').root === 'C:\\');
  });

  it('absolutePath resolves against the base directory and validates', async () => {
    const dir = await tempDir();
    const ctx = context(dir, { baseDirectory: join(dir, 'base') });
    assert.equal(absolutePath(ctx, 'a/b.txt'), join(dir, 'base', 'a', 'b.txt'));
    assert.equal(absolutePath(ctx, '../x'), join(dir, 'x'));
    assert.equal(absolutePath(ctx, join(dir, 'abs')), join(dir, 'abs'));
    assert.throws(() => absolutePath(ctx, ''), { kind: 'InvalidArgument' });
    assert.throws(() => absolutePath(ctx, 'a\0'), { kind: 'InvalidArgument' });
    assert.throws(() => absolutePath(ctx, 7), { kind: 'InvalidArgument' });
  });

  it('realLocationSync follows existing and dangling links', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'real'));
    await symlink(join(dir, 'real'), join(dir, 'ln'));
    await symlink(join(dir, 'real', 'later.txt'), join(dir, 'dangling'));
    const real = realLocationSync(dir);
    assert.equal(realLocationSync(join(dir, 'ln', 'missing', 'x')), join(real, 'real', 'missing', 'x'));
    assert.equal(realLocationSync(join(dir, 'dangling')), join(real, 'real', 'later.txt'));
    await symlink(join(dir, 'loop'), join(dir, 'loop'));
    assert.throws(() => realLocationSync(join(dir, 'loop')), { kind: 'IOError', message: /symbolic links/ });
  });
});

describe('relative paths', () => {
  it('resolve against baseDirectory for every kind of command', async () => {
    const dir = await tempDir();
    const base = join(dir, 'base');
    await mkdir(base);
    const svc = hostOf(context(dir, { baseDirectory: base }));
    await svc.call('WriteAllBytes', {
      path: 'a.txt',
      contents: Buffer.from('A'),
      mode: null,
      lastWriteUtc: null,
    });
    assert.equal(await readFile(join(base, 'a.txt'), 'utf8'), 'A');
    assert.deepEqual(await svc.call('FileExists', { path: 'a.txt' }), { exists: true });
    await svc.call('CopyFile', { source: 'a.txt', target: '../copy.txt', overwrite: false });
    assert.equal(await readFile(join(dir, 'copy.txt'), 'utf8'), 'A');
    await svc.call('Move', { source: 'a.txt', target: 'sub/./moved.txt', overwrite: false });
    assert.equal(await readFile(join(base, 'sub', 'moved.txt'), 'utf8'), 'A');
    const h = await svc.call('OpenFile', {
      path: 'sub/moved.txt',
      fileMode: FileMode.Open,
      access: FileAccess.Read,
    });
    assert.equal(
      Buffer.from(
        (await svc.call('ReadFile', { handle: h.handle, position: 0, maxCount: 9 })).data,
      ).toString(),
      'A',
    );
    await svc.call('CloseFile', h);
    await svc.call('DeleteDirectory', { path: 'sub', recursive: true });
    await assert.rejects(stat(join(base, 'sub')), { code: 'ENOENT' });
  });
});

describe('allowedRoots', () => {
  async function jail() {
    const dir = await tempDir();
    const root = join(dir, 'root');
    const outside = join(dir, 'outside');
    await mkdir(root);
    await mkdir(outside);
    await writeFile(join(outside, 'secret.txt'), 'secret');
    await symlink(outside, join(root, 'escape'));
    await symlink(join(outside, 'new.txt'), join(root, 'dangling'));
    await symlink(join(outside, 'secret.txt'), join(root, 'secret-link'));
    await mkdir(join(root, 'inner'));
    await symlink(join(root, 'inner'), join(root, 'inner-link'));
    const svc = hostOf(context(dir, { baseDirectory: root, allowedRoots: [root] }));
    return { dir, root, outside, svc };
  }

  it('denies paths outside the roots, naming the path', async () => {
    const { outside, svc } = await jail();
    const p = join(outside, 'secret.txt');
    await rejectsKind(
      svc.call('ReadAllBytes', { path: p }),
      'AccessDenied',
      new RegExp(`AccessDenied: ${p}: `),
    );
    await rejectsKind(svc.call('FileExists', { path: '../outside/secret.txt' }), 'AccessDenied');
    await rejectsKind(svc.call('DeleteFile', { path: p }), 'AccessDenied');
    await rejectsKind(svc.call('DeleteDirectory', { path: '..', recursive: true }), 'AccessDenied');
    await rejectsKind(svc.call('ClearDirectory', { path: outside }), 'AccessDenied');
    await rejectsKind(svc.call('DeleteFiles', { paths: ['ok.txt', p] }), 'AccessDenied');
    await rejectsKind(svc.call('Move', { source: p, target: 'x', overwrite: false }), 'AccessDenied');
    await rejectsKind(svc.call('CopyFile', { source: p, target: 'x', overwrite: false }), 'AccessDenied');
    await rejectsKind(svc.call('SetMode', { path: p, mode: 0o777 }), 'AccessDenied');
    await rejectsKind(
      svc.call('DeleteDirectory', { path: path.parse(p).root, recursive: true }),
      'AccessDenied',
      /file-system root/,
    );
    assert.equal(await readFile(p, 'utf8'), 'secret');
  });

  it('defeats symlink escapes for reads, writes, creates and listings', async () => {
    const { root, outside, svc } = await jail();
    const w = (p: string) =>
      svc.call('WriteAllBytes', { path: p, contents: Buffer.from('pwned'), mode: null, lastWriteUtc: null });
    await rejectsKind(w('escape/secret.txt'), 'AccessDenied', /escape/);
    await rejectsKind(w('escape/new/deep.txt'), 'AccessDenied');
    await rejectsKind(w('secret-link'), 'AccessDenied');
    await rejectsKind(w('dangling'), 'AccessDenied');
    await rejectsKind(svc.call('ReadAllBytes', { path: 'secret-link' }), 'AccessDenied');
    await rejectsKind(svc.call('ReadAllBytes', { path: 'escape/secret.txt' }), 'AccessDenied');
    await rejectsKind(
      svc.call('GetFileHash', { path: 'escape/secret.txt', algorithm: 'sha256' }),
      'AccessDenied',
    );
    await rejectsKind(svc.call('CreateDirectory', { path: 'escape/sub' }), 'AccessDenied');
    await rejectsKind(svc.call('ClearDirectory', { path: 'escape' }), 'AccessDenied');
    await rejectsKind(
      svc.call('ListDirectory', { path: 'escape', recursive: true, include: [], exclude: [] }),
      'AccessDenied',
    );
    await rejectsKind(
      svc.call('OpenFile', { path: 'dangling', fileMode: FileMode.Create, access: FileAccess.Write }),
      'AccessDenied',
    );
    await rejectsKind(
      svc.call('OpenFile', {
        path: 'escape/secret.txt',
        fileMode: FileMode.Open,
        access: FileAccess.Read,
      }),
      'AccessDenied',
    );
    await rejectsKind(
      svc.call('Move', { source: 'inner', target: 'escape/stolen', overwrite: false }),
      'AccessDenied',
    );
    await rejectsKind(
      svc.call('CopyFile', { source: 'secret-link', target: 'copy', overwrite: false }),
      'AccessDenied',
    );
    await rejectsKind(
      svc.call('SetLastWriteTime', { path: 'secret-link', lastWriteUtc: 0n }),
      'AccessDenied',
    );
    assert.deepEqual((await readdir(outside)).sort(), ['secret.txt']);
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
    assert.equal(svc.files.openHandles, 0);
    assert.ok((await lstat(join(root, 'dangling'))).isSymbolicLink());
  });

  it('still allows the links themselves and links that stay inside', async () => {
    const { root, outside, svc } = await jail();
    const link = (await svc.call('GetFileInfo', { path: 'escape' })).entry;
    assert.equal((link?.mode ?? 0) & 0o170000, 0o120000, 'the link itself');
    await svc.call('WriteAllBytes', {
      path: 'inner-link/f.txt',
      contents: Buffer.from('in'),
      mode: null,
      lastWriteUtc: null,
    });
    assert.equal(await readFile(join(root, 'inner', 'f.txt'), 'utf8'), 'in');
    const names = (
      await svc.call('ListDirectory', { path: '.', recursive: true, include: [], exclude: [] })
    ).entries.map((e) => path.relative(root, e.fullPath));
    assert.ok(names.includes('escape') && !names.includes('escape/secret.txt'), names.join());
    await svc.call('DeleteFile', { path: 'escape' });
    await svc.call('DeleteFile', { path: 'secret-link' });
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
  });

  it('refuses a directory swapped for an escaping symlink after it was used', async () => {
    // Nothing about a directory's real location may be remembered between
    // requests: the same paths, once fine, must be refused after the swap.
    const { root, outside, svc } = await jail();
    const w = (p: string, data = 'in') =>
      svc.call('WriteAllBytes', { path: p, contents: Buffer.from(data), mode: null, lastWriteUtc: null });
    await w('work/a.txt');
    await w('work/sub/b.txt');
    assert.deepEqual(await svc.call('FileExists', { path: 'work/a.txt' }), { exists: true });
    assert.equal((await svc.call('GetFileInfo', { path: 'work/sub' })).entry?.isDirectory, true);
    await rename(join(root, 'work'), join(root, 'work-old'));
    await symlink(outside, join(root, 'work'));
    await writeFile(join(outside, 'a.txt'), 'outside');
    await mkdir(join(outside, 'sub'));
    await rejectsKind(w('work/a.txt', 'pwned'), 'AccessDenied', /work/);
    await rejectsKind(w('work/sub/b.txt', 'pwned'), 'AccessDenied');
    await rejectsKind(w('work/new/c.txt', 'pwned'), 'AccessDenied');
    await rejectsKind(svc.call('FileExists', { path: 'work/a.txt' }), 'AccessDenied');
    await rejectsKind(svc.call('GetFileInfo', { path: 'work/sub' }), 'AccessDenied');
    await rejectsKind(svc.call('ReadAllBytes', { path: 'work/a.txt' }), 'AccessDenied');
    await rejectsKind(svc.call('DeleteFile', { path: 'work/a.txt' }), 'AccessDenied');
    await rejectsKind(svc.call('CreateDirectory', { path: 'work/sub/x' }), 'AccessDenied');
    assert.equal(await readFile(join(outside, 'a.txt'), 'utf8'), 'outside');
    assert.deepEqual((await readdir(outside)).sort(), ['a.txt', 'secret.txt', 'sub']);
    assert.deepEqual(await readdir(join(outside, 'sub')), []);
  });

  it('refuses a final component swapped for an escaping symlink after it was used', async () => {
    const { root, outside, svc } = await jail();
    const p = join(root, 'cfg');
    await svc.call('WriteAllBytes', { path: p, contents: Buffer.from('v1'), mode: null, lastWriteUtc: null });
    assert.deepEqual(await svc.call('FileExists', { path: p }), { exists: true });
    await rm(p);
    await symlink(join(outside, 'secret.txt'), p);
    await rejectsKind(
      svc.call('WriteAllBytes', { path: p, contents: Buffer.from('pwned'), mode: null, lastWriteUtc: null }),
      'AccessDenied',
    );
    await rejectsKind(svc.call('FileExists', { path: p }), 'AccessDenied');
    await rejectsKind(svc.call('ReadAllBytes', { path: p }), 'AccessDenied');
    assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
    // Not following the final link is fine: the link itself is inside.
    assert.equal(((await svc.call('GetFileInfo', { path: p })).entry?.mode ?? 0) & 0o170000, 0o120000);
  });

  it('accepts a root given through a symlink', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'real'));
    await symlink(join(dir, 'real'), join(dir, 'alias'));
    const svc = hostOf(
      context(dir, { baseDirectory: join(dir, 'alias'), allowedRoots: [join(dir, 'alias')] }),
    );
    await svc.call('WriteAllBytes', {
      path: 'x.txt',
      contents: Buffer.from('x'),
      mode: null,
      lastWriteUtc: null,
    });
    assert.equal(await readFile(join(dir, 'real', 'x.txt'), 'utf8'), 'x');
    await rejectsKind(svc.call('FileExists', { path: join(dir, 'real', 'x.txt') }), 'AccessDenied');
  });
});

describe('robustness', () => {
  it('turns any argument junk into a HostError, never another exception', async () => {
    const dir = await tempDir();
    const work = join(dir, 'work');
    await mkdir(work);
    await writeFile(join(work, 'a'), 'a');
    const svc = hostOf(context(dir, { baseDirectory: work, allowedRoots: [work], maxOpenFiles: 4 }));
    // Path strings without separators or dots stay inside `work` even if the roots check were broken.
    const pathStr = fc.string({
      unit: fc.constantFrom('a', 'b', ' ', '*', '?', '\0', 'é', '~'),
      maxLength: 6,
    });
    const junk = fc.oneof(
      pathStr,
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt(),
      fc.uint8Array({ maxLength: 8 }),
      fc.array(pathStr, { maxLength: 3 }),
      fc.object({ maxDepth: 1 }),
    );
    // Mostly well-typed values (so commands really run), sometimes junk.
    const f = <T>(valid: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: junk as fc.Arbitrary<unknown>, weight: 1 });
    const small = (min: number, max: number) => fc.integer({ min, max });
    const args = fc.record(
      {
        path: f(pathStr),
        paths: f(fc.array(pathStr, { maxLength: 3 })),
        recursive: f(fc.boolean()),
        include: f(fc.array(pathStr, { maxLength: 2 })),
        exclude: f(fc.array(pathStr, { maxLength: 2 })),
        source: f(pathStr),
        target: f(pathStr),
        overwrite: f(fc.boolean()),
        contents: f(fc.uint8Array({ maxLength: 64 })),
        data: f(fc.uint8Array({ maxLength: 64 })),
        mode: f(fc.oneof(fc.constant(null), small(-1, 0o200000))),
        lastWriteUtc: f(fc.oneof(fc.constant(null), fc.bigInt({ min: -1n, max: 3155378975999999999n }))),
        fileMode: f(small(0, 7)),
        access: f(small(0, 4)),
        handle: f(small(-1, 6)),
        position: f(small(-2, 100)),
        maxCount: f(small(-1, 100)),
        algorithm: f(fc.constantFrom('sha256', 'sha1', 'md5', 'crc32', '')),
      },
      { requiredKeys: [] },
    );
    const kinds = new Map<string, number>();
    const internal: string[] = [];
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...FILE_COMMANDS), args, async (name, a) => {
        try {
          await svc.call(name, a as never);
          ok++;
        } catch (e) {
          assert.ok(e instanceof HostError, `${name}: ${String(e)}`);
          assert.ok(e.message.length > 0);
          kinds.set(e.kind, (kinds.get(e.kind) ?? 0) + 1);
          if (e.kind === 'Internal')
            internal.push(
              `${name}(${JSON.stringify(a, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}): ${e.message}`,
            );
        }
      }),
      { numRuns: 600 },
    );
    assert.ok(ok > 50, `only ${ok} calls succeeded`);
    assert.ok(
      kinds.has('NotFound') && kinds.has('InvalidArgument'),
      `error kinds seen: ${[...kinds.keys()].join()}`,
    );
    assert.deepEqual(internal, [], 'no internal errors');
    await svc.files.closeAll();
    assert.equal(svc.files.openHandles, 0);
    const st = await stat(dir);
    assert.ok(st.isDirectory(), 'the temp directory survived');
  });
});
