/**
 * The built-in job types, run through the dispatcher in-process on real
 * files: outpost.manifest (NDJSON streamed as JobData events, SHA-256 per
 * file, links left out), outpost.archive and outpost.extract round trips in
 * every format, and what extraction refuses (zip-slip, links, size) without
 * leaving a half-made target.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create as createTar } from 'tar';
import { decodeEventBody, decodeReply, EventCode } from '../../src/protocol/index.js';
import { cleanup, type RecordingChannel, rejectsKind, tempHost } from './helpers.js';

describe('built-in jobs', () => {
  let host: Awaited<ReturnType<typeof tempHost>>;
  let src: string;

  before(async () => {
    host = await tempHost({ maxExtractedBytes: 64 * 1024 });
    src = join(host.dir, 'src');
    await mkdir(join(src, 'a', 'b'), { recursive: true });
    await mkdir(join(src, 'empty'));
    await writeFile(join(src, 'top.txt'), 'top\n');
    await writeFile(join(src, 'a', 'one.txt'), 'one\n', { mode: 0o640 });
    await writeFile(join(src, 'a', 'b', 'two.bin'), Buffer.alloc(5000, 7));
    await utimes(join(src, 'top.txt'), new Date(1_600_000_000_000), new Date(1_600_000_000_000));
    await symlink('top.txt', join(src, 'link'));
  });
  after(cleanup);

  const job = async (jobType: string, payload: object) => {
    const r = await host.svc.call('ExecuteJob', { jobType, payload: Buffer.from(JSON.stringify(payload)) });
    return JSON.parse(Buffer.from(r.result).toString()) as Record<string, unknown>;
  };

  it('outpost.manifest streams one NDJSON line per entry with SHA-256, links left out', async () => {
    const channel = host.channel as RecordingChannel;
    const start = channel.sent.length;
    const totals = await job('outpost.manifest', { path: 'src' });
    assert.deepEqual(totals, { files: 3, directories: 3, bytes: 4 + 4 + 5000 });
    const text = channel.sent
      .slice(start)
      .map((m) => decodeReply(m.message))
      .filter((r) => r.kind === 'event' && r.event === EventCode.JobData)
      .map((r) => Buffer.from(decodeEventBody('JobData', (r as { body: Buffer }).body).data).toString())
      .join('');
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const byPath = new Map(lines.map((l) => [l.path, l]));
    assert.deepEqual([...byPath.keys()].sort(), ['a', 'a/b', 'a/b/two.bin', 'a/one.txt', 'empty', 'top.txt']);
    assert.equal(
      byPath.get('a/b/two.bin')!.sha256,
      createHash('sha256').update(Buffer.alloc(5000, 7)).digest('hex'),
    );
    assert.equal(byPath.get('a/one.txt')!.mode, 0o640);
    assert.equal(byPath.get('top.txt')!.mtimeMs, 1_600_000_000_000);
    assert.equal(byPath.get('a')!.type, 'dir');
    await rejectsKind(
      host.svc.call('ExecuteJob', { jobType: 'outpost.manifest', payload: Buffer.from('{"path":"nope"}') }),
      'NotFound',
    );
    await rejectsKind(
      host.svc.call('ExecuteJob', { jobType: 'outpost.manifest', payload: Buffer.from('[1]') }),
      'InvalidArgument',
    );
  });

  it('outpost.manifest format tsv: the same entries as tab-separated lines, odd names as JSON strings', async () => {
    const odd = 'new\nline.txt';
    await writeFile(join(src, odd), 'x');
    try {
      const channel = host.channel as RecordingChannel;
      const start = channel.sent.length;
      await job('outpost.manifest', { path: 'src', hash: false, format: 'tsv' });
      const text = channel.sent
        .slice(start)
        .map((m) => decodeReply(m.message))
        .filter((r) => r.kind === 'event' && r.event === EventCode.JobData)
        .map((r) => Buffer.from(decodeEventBody('JobData', (r as { body: Buffer }).body).data).toString())
        .join('');
      const lines = text.trimEnd().split('\n');
      assert.ok(lines.includes('f\t4\t420\t1600000000000\t\ttop.txt'), text);
      assert.ok(lines.some((l) => l.startsWith('d\t0\t') && l.endsWith('\t\ta/b')));
      assert.ok(lines.some((l) => l.startsWith('f\t1\t') && l.endsWith(`\t\t${JSON.stringify(odd)}`)));
      assert.equal(lines.length, 7);
      await rejectsKind(job('outpost.manifest', { path: 'src', format: 'xml' }), 'InvalidArgument', /tsv/);
    } finally {
      await rm(join(src, odd));
    }
  });

  for (const format of ['tar', 'tar.gz', 'zip'] as const) {
    it(`outpost.archive then outpost.extract round-trips a tree (${format})`, async () => {
      const out = join(host.dir, `out.${format}`);
      const made = await job('outpost.archive', { path: 'src', output: out, format });
      assert.equal(made.entries, 7 - 1); // 3 dirs, 3 files; the link is left out
      const target = join(host.dir, `x-${format}`);
      const r = await job('outpost.extract', { archive: out, target, removeArchive: true });
      assert.equal(r.files, 3);
      assert.equal(await readFile(join(target, 'a', 'one.txt'), 'utf8'), 'one\n');
      assert.deepEqual(await readFile(join(target, 'a', 'b', 'two.bin')), Buffer.alloc(5000, 7));
      assert.ok((await stat(join(target, 'empty'))).isDirectory());
      assert.equal((await stat(join(target, 'a', 'one.txt'))).mode & 0o777, 0o640);
      assert.equal(Math.floor((await stat(join(target, 'top.txt'))).mtimeMs / 1000), 1_600_000_000);
      await assert.rejects(stat(out), /ENOENT/);
      // Into an existing directory: files replaced one by one, others kept.
      await writeFile(join(target, 'a', 'one.txt'), 'changed\n');
      await writeFile(join(target, 'mine.txt'), 'kept\n');
      await job('outpost.archive', { path: 'src', output: out, format });
      await job('outpost.extract', { archive: out, target });
      assert.equal(await readFile(join(target, 'a', 'one.txt'), 'utf8'), 'one\n');
      assert.equal(await readFile(join(target, 'mine.txt'), 'utf8'), 'kept\n');
      assert.deepEqual(
        (await readdir(join(target, 'a'))).filter((n) => n.endsWith('.tmp')),
        [],
        'no temp files left',
      );
    });
  }

  it('refuses zip-slip, links and archives over MaxExtractedSize, leaving no target behind', async () => {
    const nest = join(host.dir, 'nest', 'inner');
    await mkdir(nest, { recursive: true });
    await writeFile(join(host.dir, 'nest', 'evil.txt'), 'evil');
    const slip = join(host.dir, 'slip.tar');
    await createTar({ cwd: nest, file: slip, preservePaths: true }, ['../evil.txt']);
    await rejectsKind(
      host.svc.call('ExecuteJob', {
        jobType: 'outpost.extract',
        payload: Buffer.from(JSON.stringify({ archive: slip, target: join(host.dir, 't1') })),
      }),
      'InvalidArgument',
      /contains \.\./,
    );
    const links = join(host.dir, 'links.tar');
    await createTar({ cwd: src, file: links }, ['link']);
    await rejectsKind(
      host.svc.call('ExecuteJob', {
        jobType: 'outpost.extract',
        payload: Buffer.from(JSON.stringify({ archive: links, target: join(host.dir, 't2') })),
      }),
      'InvalidArgument',
      /symbolic link/,
    );
    await writeFile(join(host.dir, 'big.bin'), Buffer.alloc(100 * 1024));
    for (const format of ['tar', 'zip'] as const) {
      const big = join(host.dir, `big.${format}`);
      await job('outpost.archive', { path: host.dir, output: big, format: format });
      await rejectsKind(
        host.svc.call('ExecuteJob', {
          jobType: 'outpost.extract',
          payload: Buffer.from(JSON.stringify({ archive: big, target: join(host.dir, `t3-${format}`) })),
        }),
        'TooLarge',
        /MaxExtractedSize/,
      );
    }
    // A symbolic link already in an existing target is not followed out of it.
    const outside = join(host.dir, 'outside');
    await mkdir(outside);
    const existing = join(host.dir, 't4');
    await mkdir(existing);
    await symlink(outside, join(existing, 'a'));
    const tree = join(host.dir, 'tree.tar');
    await job('outpost.archive', { path: 'src', output: tree, format: 'tar' });
    await rejectsKind(
      host.svc.call('ExecuteJob', {
        jobType: 'outpost.extract',
        payload: Buffer.from(JSON.stringify({ archive: tree, target: existing })),
      }),
      'InvalidArgument',
      /symbolic link in the target/,
    );
    assert.deepEqual(await readdir(outside), []);
    await rm(existing, { recursive: true });
    const left = (await readdir(host.dir)).filter(
      (n) => n.startsWith('t1') || n.startsWith('t2') || n.startsWith('t3') || n.endsWith('.d'),
    );
    assert.deepEqual(left, []);
  });
});
