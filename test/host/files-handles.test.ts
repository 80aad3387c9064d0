/**
 * FileService handles: OpenFile modes and access, positional ReadFile and
 * WriteFile, CloseFile, the per-session limit, closeAll, and a large round
 * trip (64 MiB; 1 GiB with OUTPOST_BIG_TESTS=1) with bounded memory.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HostDispatcher } from '../../src/host/dispatcher.js';
import { type HostContext, HostError } from '../../src/host/types.js';
import { FileAccess, FileMode } from '../../src/protocol/index.js';
import { cleanup, rejectsKind, tempHost } from './helpers.js';

after(cleanup);

async function setup(over: Partial<HostContext> = {}) {
  const t = await tempHost({ maxMessageSize: 4 * 1024 * 1024, maxOpenFiles: 4, ...over });
  return { ...t, files: t.svc.files };
}

const { CreateNew, Create, Open, OpenOrCreate, Truncate, Append } = FileMode;
const { Read, Write, ReadWrite } = FileAccess;

async function openH(svc: HostDispatcher, path: string, fileMode: number, access: number): Promise<number> {
  const { handle } = await svc.call('OpenFile', { path, fileMode, access });
  assert.ok(Number.isInteger(handle) && handle > 0 && handle <= 0x7fffffff, `handle ${handle}`);
  return handle;
}
const write = (svc: HostDispatcher, handle: number, position: number, data: string | Uint8Array) =>
  svc.call('WriteFile', { handle, position, data: typeof data === 'string' ? Buffer.from(data) : data });
const read = async (svc: HostDispatcher, handle: number, position: number, count: number) =>
  Buffer.from((await svc.call('ReadFile', { handle, position, maxCount: count })).data).toString();
const close = (svc: HostDispatcher, handle: number) => svc.call('CloseFile', { handle });

describe('OpenFile modes', () => {
  it('CreateNew creates, but fails AlreadyExists on an existing file', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'n.txt');
    const h = await openH(svc, p, CreateNew, Write);
    await write(svc, h, 0, 'abc');
    await close(svc, h);
    assert.equal(await readFile(p, 'utf8'), 'abc');
    await rejectsKind(openH(svc, p, CreateNew, ReadWrite), 'AlreadyExists', /n\.txt/);
    assert.equal(svc.files.openHandles, 0);
  });

  it('Create creates or truncates; Truncate requires the file and empties it', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'c.txt');
    await writeFile(p, 'old content');
    await close(svc, await openH(svc, p, Create, Write));
    assert.equal((await stat(p)).size, 0);
    await writeFile(p, 'again');
    await close(svc, await openH(svc, p, Truncate, ReadWrite));
    assert.equal((await stat(p)).size, 0);
    await rejectsKind(openH(svc, join(dir, 'missing'), Truncate, Write), 'NotFound');
    await close(svc, await openH(svc, join(dir, 'sub', 'created.txt'), Create, Write));
    assert.ok((await stat(join(dir, 'sub', 'created.txt'))).isFile(), 'creating modes create parents');
  });

  it('Open requires the file; OpenOrCreate creates without truncating', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'o.txt');
    await rejectsKind(openH(svc, p, Open, Read), 'NotFound', /no such file/);
    const h = await openH(svc, p, OpenOrCreate, ReadWrite);
    await write(svc, h, 0, 'hello');
    await close(svc, h);
    const h2 = await openH(svc, p, OpenOrCreate, Read);
    assert.equal(await read(svc, h2, 0, 100), 'hello');
    await close(svc, h2);
    const h3 = await openH(svc, p, Open, Read);
    assert.equal(await read(svc, h3, 1, 3), 'ell');
    await close(svc, h3);
  });

  it('Append writes at the end whatever the position, and needs Write access only', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'log.txt');
    await writeFile(p, 'one\n');
    const h = await openH(svc, p, Append, Write);
    await write(svc, h, 0, 'two\n');
    await write(svc, h, 1, 'three\n');
    await close(svc, h);
    assert.equal(await readFile(p, 'utf8'), 'one\ntwo\nthree\n');
    await rejectsKind(openH(svc, p, Append, Read), 'InvalidArgument', /Append/);
    await rejectsKind(openH(svc, p, Append, ReadWrite), 'InvalidArgument', /Append/);
    const h2 = await openH(svc, join(dir, 'fresh.log'), Append, Write);
    await write(svc, h2, 99, 'x');
    await close(svc, h2);
    assert.equal(await readFile(join(dir, 'fresh.log'), 'utf8'), 'x');
  });

  it('rejects write-requiring modes with Read access and out-of-range values', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'f');
    await writeFile(p, 'keep');
    for (const m of [CreateNew, Create, Truncate])
      await rejectsKind(openH(svc, p, m, Read), 'InvalidArgument');
    await rejectsKind(openH(svc, p, 0, Read), 'InvalidArgument', /fileMode/);
    await rejectsKind(openH(svc, p, 7, Read), 'InvalidArgument', /fileMode/);
    await rejectsKind(openH(svc, p, Open, 0), 'InvalidArgument', /access/);
    await rejectsKind(openH(svc, p, Open, 4), 'InvalidArgument', /access/);
    assert.equal(await readFile(p, 'utf8'), 'keep');
    await mkdir(join(dir, 'd'));
    await rejectsKind(openH(svc, join(dir, 'd'), Open, Read), 'IsDirectory');
    await rejectsKind(openH(svc, join(dir, 'd'), OpenOrCreate, ReadWrite), 'IsDirectory');
    assert.equal(svc.files.openHandles, 0);
  });
});

describe('ReadFile / WriteFile / CloseFile', () => {
  it('reads and writes positionally; reads are short at EOF', async () => {
    const { dir, svc } = await setup();
    const h = await openH(svc, join(dir, 'p.bin'), CreateNew, ReadWrite);
    await write(svc, h, 5, 'world');
    await write(svc, h, 0, 'hello');
    assert.equal(await read(svc, h, 0, 10), 'helloworld');
    assert.equal(await read(svc, h, 7, 100), 'rld');
    assert.equal(await read(svc, h, 10, 5), '');
    assert.equal(await read(svc, h, 1000, 5), '');
    assert.equal(await read(svc, h, 2, 0), '');
    await close(svc, h);
  });

  it('enforces access: no reads on write-only, no writes on read-only handles', async () => {
    const { dir, svc } = await setup();
    const p = join(dir, 'a.txt');
    const w = await openH(svc, p, CreateNew, Write);
    await rejectsKind(read(svc, w, 0, 1), 'AccessDenied', /without read access/);
    await close(svc, w);
    const r = await openH(svc, p, Open, Read);
    await rejectsKind(write(svc, r, 0, 'x'), 'AccessDenied', /without write access/);
    await close(svc, r);
  });

  it('clamps maxCount so the reply fits the message limit, and validates position', async () => {
    const { dir, svc, ctx } = await setup({ maxMessageSize: 64 * 1024 });
    const h = await openH(svc, join(dir, 'v'), CreateNew, ReadWrite);
    await write(svc, h, 0, Buffer.alloc(200 * 1024, 1));
    const { data } = await svc.call('ReadFile', { handle: h, position: 0, maxCount: 0x7fffffff });
    assert.equal(data.length, ctx.maxMessageSize - 8, 'token and byte count leave room for exactly this');
    assert.equal((await svc.call('ReadFile', { handle: h, position: 10, maxCount: 5 })).data.length, 5);
    await rejectsKind(read(svc, h, 0, -1), 'InvalidArgument', /maxCount/);
    await rejectsKind(read(svc, h, -2, 1), 'InvalidArgument', /position/);
    await rejectsKind(write(svc, h, -5, 'x'), 'InvalidArgument', /position/);
    await close(svc, h);
  });

  it('position −1 continues from where the last read or write on the handle ended', async () => {
    const { dir, svc } = await setup();
    const h = await openH(svc, join(dir, 'seq.txt'), CreateNew, ReadWrite);
    await write(svc, h, -1, 'abc');
    await write(svc, h, -1, 'def');
    assert.equal(await read(svc, h, 0, 2), 'ab');
    assert.equal(await read(svc, h, -1, 2), 'cd');
    assert.equal(await read(svc, h, -1, 100), 'ef');
    assert.equal(await read(svc, h, -1, 100), '', 'empty at end of file');
    await write(svc, h, 1, 'X');
    await write(svc, h, -1, 'Y');
    await close(svc, h);
    assert.equal(await readFile(join(dir, 'seq.txt'), 'utf8'), 'aXYdef');
  });

  it('unknown and closed handles are InvalidArgument', async () => {
    const { dir, svc } = await setup();
    await rejectsKind(read(svc, 12345, 0, 1), 'InvalidArgument', /12345/);
    await rejectsKind(write(svc, 0, 0, 'x'), 'InvalidArgument');
    await rejectsKind(close(svc, -1), 'InvalidArgument');
    const h = await openH(svc, join(dir, 'x'), CreateNew, Write);
    await close(svc, h);
    await rejectsKind(close(svc, h), 'InvalidArgument');
    await rejectsKind(write(svc, h, 0, 'x'), 'InvalidArgument');
  });
});

describe('handle table', () => {
  it('enforces maxOpenFiles, naming the limit, and frees slots on close', async () => {
    const { dir, svc } = await setup({ maxOpenFiles: 3 });
    const hs: number[] = [];
    for (let i = 0; i < 3; i++) hs.push(await openH(svc, join(dir, `f${i}`), Create, Write));
    assert.equal(new Set(hs).size, 3, 'distinct handles');
    assert.equal(svc.files.openHandles, 3);
    await rejectsKind(openH(svc, join(dir, 'f3'), Create, Write), 'LimitExceeded', /limit is 3/);
    await close(svc, hs[0]!);
    const again = await openH(svc, join(dir, 'f3'), Create, Write);
    assert.equal(svc.files.openHandles, 3);
    assert.ok(!hs.includes(again), 'handles are not reused at once');
    await svc.files.closeAll();
  });

  it('counts opens in flight against the limit', async () => {
    const { dir, svc } = await setup({ maxOpenFiles: 3 });
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        svc.call('OpenFile', { path: join(dir, `c${i}`), fileMode: Create, access: Write }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled');
    const limited = results.filter(
      (r) => r.status === 'rejected' && r.reason instanceof HostError && r.reason.kind === 'LimitExceeded',
    );
    assert.equal(ok.length, 3);
    assert.equal(limited.length, 3);
    assert.equal(svc.files.openHandles, 3);
    await svc.files.closeAll();
  });

  it('closeAll closes everything and invalidates the handles', async () => {
    const { dir, svc } = await setup();
    const a = await openH(svc, join(dir, 'a'), Create, ReadWrite);
    const b = await openH(svc, join(dir, 'b'), Create, ReadWrite);
    await write(svc, a, 0, 'data');
    assert.equal(svc.files.openHandles, 2);
    await svc.files.closeAll();
    assert.equal(svc.files.openHandles, 0);
    await rejectsKind(read(svc, a, 0, 1), 'InvalidArgument');
    await rejectsKind(close(svc, b), 'InvalidArgument');
    assert.equal(await readFile(join(dir, 'a'), 'utf8'), 'data');
    await svc.files.closeAll();
  });
});

describe('handles of a host that ended (issue 18)', () => {
  it('numbers from firstHandle; a lower handle after a crash is HostCrashed naming why, others unknown', async () => {
    const lostBy = 'killed by SIGKILL';
    const { dir, svc } = await setup({ firstHandle: 1 + (1 << 20), handlesLostBy: lostBy });
    const h = await openH(svc, join(dir, 'n'), Create, Write);
    assert.equal(h, 1 + (1 << 20));
    await rejectsKind(
      write(svc, 1, 0, 'x'),
      'HostCrashed',
      /host process of this session that ended \(killed by SIGKILL\)/,
    );
    await rejectsKind(close(svc, h + 5), 'InvalidArgument', /not an open file handle/);
    const { svc: calm } = await setup({ firstHandle: 1 + (1 << 20), handlesLostBy: null });
    await rejectsKind(write(calm, 1, 0, 'x'), 'InvalidArgument', /not an open file handle/);
    await svc.files.closeAll();
  });
});

describe('large round trip through handles', () => {
  const big = process.env.OUTPOST_BIG_TESTS === '1';
  const total = big ? 1024 * 1024 * 1024 : 64 * 1024 * 1024;
  const chunk = 1024 * 1024;

  it(`writes ${total / chunk} MiB in 1 MiB chunks and reads it back with bounded memory`, async () => {
    const { dir, svc } = await setup({ maxMessageSize: 2 * chunk });
    const p = join(dir, 'big.bin');
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sample = () => {
      peak = Math.max(peak, process.memoryUsage().rss);
    };

    const local = createHash('sha256');
    const block = Buffer.alloc(chunk);
    const h = await openH(svc, p, CreateNew, Write);
    for (let i = 0; i < total / chunk; i++) {
      // Deterministic, chunk-distinct content: a seed hash repeated over the block.
      const seed = createHash('sha256').update(`chunk ${i}`).digest();
      for (let off = 0; off < chunk; off += seed.length) seed.copy(block, off);
      local.update(block);
      await write(svc, h, i * chunk, block);
      if (i % 16 === 0) sample();
    }
    await close(svc, h);
    assert.equal((await stat(p)).size, total);
    const expected = local.digest('hex');

    const { hash } = await svc.call('GetFileHash', { path: p, algorithm: 'sha256' });
    assert.equal(hash, expected);
    sample();

    const back = createHash('sha256');
    const r = await openH(svc, p, Open, Read);
    let pos = 0;
    for (;;) {
      const { data } = await svc.call('ReadFile', { handle: r, position: pos, maxCount: chunk });
      if (data.length === 0) break;
      back.update(data);
      pos += data.length;
      if ((pos / chunk) % 16 === 0) sample();
    }
    await close(svc, r);
    assert.equal(pos, total);
    assert.equal(back.digest('hex'), expected);
    sample();
    const growth = peak - rss0;
    assert.ok(growth < 200 * 1024 * 1024, `RSS grew by ${Math.round(growth / 1024 / 1024)} MiB`);
  });
});
