/**
 * The SDK's file methods against a real agent confined to a temp directory:
 * every method, its result checked on the local file system, and its errors
 * (wire kind as `code`, the path named).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type AgentClient,
  entryName,
  entryType,
  isRemoteError,
  type RemoteEntry,
  RemoteError,
  relativeName,
  S_IFMT,
  S_IFREG,
} from '../../src/index.js';
import { type ClientAgent, startClientAgent } from './helpers.js';

describe('AgentClient file methods', () => {
  let env: ClientAgent;
  let client: AgentClient;
  let n = 0;
  /** A fresh directory under the allowed root for each test. */
  const fresh = async () => {
    const d = join(env.root, `t${++n}`);
    await mkdir(d);
    return d;
  };
  before(async () => {
    env = await startClientAgent();
    client = await env.connect();
  });
  after(async () => {
    await client?.close();
    await env?.stop();
  });

  it('writeFile/readFile round-trip strings and bytes, with mode and mtime', async () => {
    const d = await fresh();
    const p = join(d, 'sub', 'a.txt');
    await client.writeFile(p, 'héllo');
    assert.equal(await readFile(p, 'utf8'), 'héllo', 'parents created, UTF-8 by default');
    assert.equal(await client.readFile(p, { encoding: 'utf8' }), 'héllo');
    const bytes = Buffer.from([0, 255, 1, 254]);
    const mtime = new Date('2021-02-03T04:05:06.789Z');
    await client.writeFile(p, bytes, { mode: 0o640, mtime });
    const back = await client.readFile(p);
    assert.ok(Buffer.isBuffer(back));
    assert.deepEqual(back, bytes);
    const st = await stat(p);
    assert.equal(st.mode & 0o777, 0o640);
    assert.equal(st.mtime.getTime(), mtime.getTime());
    const remote = await client.stat(p);
    assert.equal(entryType(remote), 'file');
    assert.equal(remote.fullPath, p);
    assert.equal(remote.isDirectory, false);
    assert.equal(remote.size, 4);
    assert.equal(remote.mode & 0o7777, 0o640);
    assert.equal(remote.mode & S_IFMT, S_IFREG);
    assert.equal(remote.lastWriteUtc.getTime(), mtime.getTime());
    assert.equal(typeof remote.lastWriteTicks, 'bigint');
    assert.deepEqual(await readdir(join(d, 'sub')), ['a.txt'], 'no temp file left behind');
  });

  it('exists, dirExists and stat tell files, directories and absence apart', async () => {
    const d = await fresh();
    await writeFile(join(d, 'f'), 'x');
    await symlink('f', join(d, 'link'));
    assert.equal(await client.exists(join(d, 'f')), true);
    assert.equal(await client.exists(d), false);
    assert.equal(await client.exists(join(d, 'nope')), false);
    assert.equal(await client.dirExists(d), true);
    assert.equal(await client.dirExists(join(d, 'f')), false);
    assert.equal(entryType(await client.stat(d)), 'directory');
    assert.equal((await client.stat(d)).isDirectory, true);
    assert.equal(entryType(await client.stat(join(d, 'link'))), 'symlink');
    await assert.rejects(client.stat(join(d, 'nope')), (e: unknown) => {
      assert.ok(e instanceof RemoteError);
      assert.equal(e.code, 'NotFound');
      assert.equal(e.path, join(d, 'nope'));
      return true;
    });
  });

  it('mkdir and list (recursive, include, exclude)', async () => {
    const d = await fresh();
    await client.mkdir(join(d, 'a', 'b', 'c'));
    await client.mkdir(join(d, 'a', 'b', 'c')); // existing is fine
    await writeFile(join(d, 'a', 'one.txt'), '1');
    await writeFile(join(d, 'a', 'b', 'two.log'), '22');
    const rel = (e: RemoteEntry) => relativeName(d, e.fullPath);
    const flat = await client.list(d);
    assert.deepEqual(
      flat.map((e) => [entryName(e), entryType(e), e.fullPath]),
      [['a', 'directory', join(d, 'a')]],
    );
    const all = await client.list(d, { recursive: true });
    assert.deepEqual(all.map(rel), ['a', 'a/b', 'a/b/c', 'a/b/two.log', 'a/one.txt']);
    assert.equal(all.find((e) => rel(e) === 'a/b/two.log')?.size, 2);
    const logs = await client.list(d, { recursive: true, include: '**/*.log' });
    assert.deepEqual(logs.map(rel), ['a/b/two.log']);
    const noB = await client.list(d, { recursive: true, exclude: ['a/b'] });
    assert.deepEqual(noB.map(rel), ['a', 'a/one.txt']);
    await assert.rejects(client.list(join(d, 'a', 'one.txt')), (e: unknown) =>
      isRemoteError(e, 'NotDirectory'),
    );
  });

  it('rm deletes one file or many (DeleteFiles); directories are refused', async () => {
    const d = await fresh();
    for (const f of ['a', 'b', 'c']) await writeFile(join(d, f), f);
    await client.rm(join(d, 'a'));
    await client.rm(join(d, 'a')); // absent is fine
    await client.rm([join(d, 'b'), join(d, 'c'), join(d, 'missing')]);
    await client.rm([]);
    assert.deepEqual(await readdir(d), []);
    await mkdir(join(d, 'dir'));
    await assert.rejects(client.rm(join(d, 'dir')), (e: unknown) => isRemoteError(e, 'IsDirectory'));
    await assert.rejects(client.rm(['ok', 7 as unknown as string]), {
      name: 'TypeError',
      message: /path\[1\]/,
    });
  });

  it('rmdir refuses a non-empty directory unless recursive; clear empties one', async () => {
    const d = await fresh();
    await mkdir(join(d, 'x', 'y'), { recursive: true });
    await writeFile(join(d, 'x', 'y', 'f'), 'f');
    await assert.rejects(client.rmdir(join(d, 'x')), (e: unknown) => isRemoteError(e, 'NotEmpty'));
    assert.equal(await readFile(join(d, 'x', 'y', 'f'), 'utf8'), 'f', 'nothing deleted');
    await client.clear(join(d, 'x'));
    assert.deepEqual(await readdir(join(d, 'x')), []);
    await writeFile(join(d, 'x', 'g'), 'g');
    await client.rmdir(join(d, 'x'), { recursive: true });
    assert.equal(await client.dirExists(join(d, 'x')), false);
    await client.clear(join(d, 'new'));
    assert.equal(await client.dirExists(join(d, 'new')), true, 'clear creates a missing directory');
  });

  it('move and copy refuse to overwrite unless asked', async () => {
    const d = await fresh();
    await writeFile(join(d, 'src'), 'source');
    await writeFile(join(d, 'dst'), 'old');
    await assert.rejects(client.copy(join(d, 'src'), join(d, 'dst')), (e: unknown) =>
      isRemoteError(e, 'AlreadyExists'),
    );
    assert.equal(await readFile(join(d, 'dst'), 'utf8'), 'old');
    await client.copy(join(d, 'src'), join(d, 'dst'), { overwrite: true });
    assert.equal(await readFile(join(d, 'dst'), 'utf8'), 'source');
    await writeFile(join(d, 'dst'), 'old again');
    await assert.rejects(client.move(join(d, 'src'), join(d, 'dst')), (e: unknown) =>
      isRemoteError(e, 'AlreadyExists'),
    );
    await client.move(join(d, 'src'), join(d, 'dst'), { overwrite: true });
    assert.equal(await readFile(join(d, 'dst'), 'utf8'), 'source');
    assert.equal(await client.exists(join(d, 'src')), false);
    await client.move(join(d, 'dst'), join(d, 'deep', 'moved'));
    assert.equal(await readFile(join(d, 'deep', 'moved'), 'utf8'), 'source');
  });

  it('hash computes SHA-256, SHA-1 and MD5 on the agent', async () => {
    const d = await fresh();
    const data = Buffer.from('the quick brown fox');
    await writeFile(join(d, 'f'), data);
    for (const algo of ['sha256', 'sha1', 'md5'] as const)
      assert.equal(await client.hash(join(d, 'f'), algo), createHash(algo).update(data).digest('hex'), algo);
    assert.equal(await client.hash(join(d, 'f')), createHash('sha256').update(data).digest('hex'));
    await assert.rejects(client.hash(join(d, 'f'), 'crc32' as 'md5'), {
      name: 'TypeError',
      message: /sha256/,
    });
  });

  it('setMtime and chmod change the file', async () => {
    const d = await fresh();
    const p = join(d, 'f');
    await writeFile(p, 'x', { mode: 0o600 });
    const when = new Date('2000-01-01T00:00:00.123Z');
    await client.setMtime(p, when);
    await client.chmod(p, 0o751);
    const st = await stat(p);
    assert.equal(st.mtime.getTime(), when.getTime());
    assert.equal(st.mode & 0o7777, 0o751);
    await assert.rejects(client.chmod(p, 0o10000), { name: 'RangeError', message: /0o7777/ });
    await assert.rejects(client.setMtime(p, new Date(Number.NaN)), {
      name: 'TypeError',
      message: /valid Date/,
    });
  });

  it('getBaseWorkingDirectory is the product root; getEnvironmentVariable reads the host environment', async () => {
    assert.equal(await client.getBaseWorkingDirectory(), await client.rootPath());
    assert.equal(typeof (await client.getEnvironmentVariable('PATH')), 'string');
    assert.equal(await client.getEnvironmentVariable('OUTPOST_TEST_SURELY_UNSET_9F2'), null);
  });

  it('bad paths are refused before anything is sent', async () => {
    await assert.rejects(client.exists(''), {
      name: 'TypeError',
      message: /path must be a non-empty string/,
    });
    await assert.rejects(client.readFile('a\0b'), { name: 'TypeError', message: /NUL/ });
    await assert.rejects(client.writeFile(join(env.root, 'x'), 42 as unknown as string), {
      name: 'TypeError',
      message: /data must be a string, Buffer or Uint8Array/,
    });
    assert.equal(await client.exists(join(env.root, 'x')), false, 'nothing was written');
  });
});
