/**
 * upload / download / sync against a real agent: single files (small and
 * streamed), whole trees, verification, progress, atomic targets, and sync
 * sending only what changed.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AbortError, type AgentClient, OutpostError, type TransferProgress } from '../../src/index.js';
import { type ClientAgent, startClientAgent } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Every file under `dir` as relative name → SHA-256, plus empty directories. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string) => {
    const entries = await readdir(abs, { withFileTypes: true });
    if (entries.length === 0 && rel !== '') out[`${rel}/`] = 'dir';
    for (const e of entries) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(join(abs, e.name), r);
      else if (e.isFile()) out[r] = sha(await readFile(join(abs, e.name)));
    }
  };
  await walk(dir, '');
  return out;
}

describe('AgentClient transfers', () => {
  let env: ClientAgent;
  let client: AgentClient;
  let n = 0;
  const fresh = async () => {
    const d = join(env.root, `x${++n}`);
    await mkdir(d);
    return d;
  };
  /** A tree with nested, empty and large entries and a symlink. */
  const makeTree = async (d: string) => {
    await mkdir(join(d, 'bin', 'deep'), { recursive: true });
    await mkdir(join(d, 'empty'));
    await writeFile(join(d, 'README'), 'hello');
    await writeFile(join(d, 'bin', 'run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
    await writeFile(join(d, 'bin', 'deep', 'large.bin'), randomBytes(3 * 1024 * 1024 + 5));
    for (let i = 0; i < 20; i++) await writeFile(join(d, 'bin', `f${i}.txt`), `file ${i}`);
    await symlink('README', join(d, 'link'));
  };
  before(async () => {
    env = await startClientAgent();
    client = await env.connect();
  });
  after(async () => {
    await client?.close();
    await env?.stop();
  });

  it('uploads a small and a large file verified, with mode, mtime and progress', async () => {
    const d = await fresh();
    const small = join(d, 'small.txt');
    const large = join(d, 'large.bin');
    await writeFile(small, 'tiny', { mode: 0o640 });
    const bytes = randomBytes(2 * 1024 * 1024 + 3);
    await writeFile(large, bytes, { mode: 0o700 });
    const when = new Date('2020-01-02T03:04:05.678Z');
    await utimes(large, when, when);
    const seen: TransferProgress[] = [];
    const r1 = await client.upload(small, join(d, 'out', 'small.txt'));
    assert.deepEqual(r1, { files: 1, bytes: 4, directories: 0, skipped: [] });
    const r2 = await client.upload(large, join(d, 'out', 'large.bin'), { onProgress: (p) => seen.push(p) });
    assert.equal(r2.bytes, bytes.length);
    assert.equal(await readFile(join(d, 'out', 'small.txt'), 'utf8'), 'tiny');
    assert.equal(sha(await readFile(join(d, 'out', 'large.bin'))), sha(bytes));
    const st = await stat(join(d, 'out', 'large.bin'));
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.mtime.getTime(), when.getTime());
    assert.equal((await stat(join(d, 'out', 'small.txt'))).mode & 0o777, 0o640);
    assert.ok(seen.length >= 2, 'progress reported while streaming');
    const last = seen.at(-1)!;
    assert.equal(last.bytes, bytes.length);
    assert.equal(last.totalBytes, bytes.length);
    assert.equal(last.files, 1);
    assert.deepEqual((await readdir(join(d, 'out'))).sort(), ['large.bin', 'small.txt'], 'no temp files');
  });

  it('uploads and downloads a whole tree (symlinks skipped, empty directories kept)', async () => {
    const d = await fresh();
    await makeTree(join(d, 'src'));
    const up = await client.upload(join(d, 'src'), join(d, 'remote'), { concurrency: 3 });
    assert.equal(up.files, 23);
    assert.deepEqual(up.skipped, ['link']);
    const expected = await snapshot(join(d, 'src'));
    delete expected.link;
    assert.deepEqual(await snapshot(join(d, 'remote')), expected);
    assert.equal((await stat(join(d, 'remote', 'bin', 'run.sh'))).mode & 0o777, 0o755);

    let lastProgress: TransferProgress | undefined;
    const down = await client.download(join(d, 'remote'), join(d, 'copy'), {
      onProgress: (p) => (lastProgress = p),
    });
    assert.equal(down.files, 23);
    assert.deepEqual(await snapshot(join(d, 'copy')), expected);
    assert.equal(lastProgress?.files, 23);
    assert.equal(lastProgress?.bytes, lastProgress?.totalBytes);
    const rs = await stat(join(d, 'remote', 'bin', 'deep', 'large.bin'));
    const cs = await stat(join(d, 'copy', 'bin', 'deep', 'large.bin'));
    assert.equal(cs.mtime.getTime(), Math.trunc(rs.mtimeMs), 'mtime kept');
    assert.equal((await stat(join(d, 'copy', 'bin', 'run.sh'))).mode & 0o777, 0o755, 'mode kept');
  });

  it('downloads a single file atomically and refuses a directory as the target', async () => {
    const d = await fresh();
    const data = randomBytes(1500 * 1024);
    await writeFile(join(d, 'remote.bin'), data);
    await writeFile(join(d, 'local.bin'), 'old');
    await client.download(join(d, 'remote.bin'), join(d, 'local.bin'), { window: 2, chunkSize: 256 * 1024 });
    assert.equal(sha(await readFile(join(d, 'local.bin'))), sha(data));
    await mkdir(join(d, 'adir'));
    await assert.rejects(
      client.download(join(d, 'remote.bin'), join(d, 'adir')),
      (e: unknown) => e instanceof OutpostError && e.code === 'IsDirectory' && e.path === join(d, 'adir'),
    );
    assert.deepEqual((await readdir(d)).sort(), ['adir', 'local.bin', 'remote.bin']);
  });

  it('an aborted upload leaves the old target and no temp files', async () => {
    const d = await fresh();
    await writeFile(join(d, 'big'), randomBytes(8 * 1024 * 1024));
    await writeFile(join(d, 'target'), 'old');
    const ac = new AbortController();
    const p = client.upload(join(d, 'big'), join(d, 'target'), {
      signal: ac.signal,
      chunkSize: 64 * 1024,
      window: 2,
      onProgress: (pr) => {
        if (pr.bytes > 1024 * 1024) ac.abort();
      },
    });
    await assert.rejects(p, (e: unknown) => e instanceof AbortError || (e as Error).name === 'AbortError');
    for (let i = 0; i < 50 && (await readdir(d)).length > 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await readFile(join(d, 'target'), 'utf8'), 'old');
    assert.deepEqual((await readdir(d)).sort(), ['big', 'target']);
  });

  it('sync sends only what changed and deletes what is gone', async () => {
    const d = await fresh();
    const src = join(d, 'src');
    const dst = join(d, 'dst');
    await makeTree(src);
    const first = await client.sync(src, dst);
    assert.equal(first.uploaded.length, 23);
    assert.equal(first.unchanged, 0);

    const again = await client.sync(src, dst);
    assert.deepEqual(again.uploaded, []);
    assert.equal(again.unchanged, 23);

    await writeFile(join(src, 'bin', 'f3.txt'), 'file X'); // same size, new mtime
    await writeFile(join(src, 'new.txt'), 'new');
    await writeFile(join(dst, 'stale.txt'), 'stale');
    await mkdir(join(dst, 'stale-dir', 'inner'), { recursive: true });
    const third = await client.sync(src, dst);
    assert.deepEqual(third.uploaded, ['bin/f3.txt', 'new.txt']);
    assert.deepEqual(third.deleted, []);
    assert.equal(await readFile(join(dst, 'stale.txt'), 'utf8'), 'stale', 'kept without delete: true');

    const fourth = await client.sync(src, dst, { delete: true });
    assert.deepEqual(fourth.uploaded, []);
    assert.deepEqual(fourth.deleted, ['stale-dir', 'stale.txt']);
    const expected = await snapshot(src);
    delete expected.link;
    assert.deepEqual(await snapshot(dst), expected);

    // Same size and same mtime but different bytes: only a hash comparison sees it.
    const st = await stat(join(src, 'README'));
    await writeFile(join(dst, 'README'), 'HELLO');
    await client.setMtime(join(dst, 'README'), new Date(Math.round(st.mtimeMs)));
    assert.deepEqual((await client.sync(src, dst)).uploaded, []);
    const byHash = await client.sync(src, dst, { compare: 'hash' });
    assert.deepEqual(byHash.uploaded, ['README']);
    assert.equal(await readFile(join(dst, 'README'), 'utf8'), 'hello');
  });
});
