/**
 * Streams through handles against an agent whose message limit is the
 * minimum (64 KiB), so every file beyond it exercises the chunked paths:
 * windows of requests in flight, readFile's fallback, writeFile's temp +
 * Move, atomic write streams and their cleanup on abort.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import { AbortError, type AgentClient, isRemoteError, MIN_MAX_MESSAGE_SIZE } from '../../src/index.js';
import { type ClientAgent, delay, internals, startClientAgent } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('AgentClient streams (64 KiB message limit)', () => {
  let env: ClientAgent;
  let client: AgentClient;
  let n = 0;
  const fresh = async () => {
    const d = join(env.root, `s${++n}`);
    await mkdir(d);
    return d;
  };
  /** Samples the number of requests in flight while `work` runs. */
  const maxInFlight = async (work: () => Promise<unknown>): Promise<number> => {
    let max = 0;
    const timer = setInterval(() => {
      max = Math.max(max, internals(client).channel.pending.size);
    }, 1);
    try {
      await work();
    } finally {
      clearInterval(timer);
    }
    return max;
  };
  before(async () => {
    env = await startClientAgent({ maxMessageSize: MIN_MAX_MESSAGE_SIZE });
    client = await env.connect();
  });
  after(async () => {
    await client?.close();
    await env?.stop();
  });

  it('readFile falls back to streaming when the file exceeds the message limit', async () => {
    const d = await fresh();
    const data = randomBytes(1024 * 1024 + 17);
    await writeFile(join(d, 'big'), data);
    const back = await client.readFile(join(d, 'big'));
    assert.equal(back.length, data.length);
    assert.equal(sha(back), sha(data));
  });

  it('writeFile above the limit goes through a temp file and Move, keeping the old mode', async () => {
    const d = await fresh();
    const p = join(d, 'big');
    await writeFile(p, 'old', { mode: 0o640 });
    const data = randomBytes(700 * 1024);
    const mtime = new Date('2022-05-06T07:08:09.000Z');
    await client.writeFile(p, data, { mtime });
    assert.equal(sha(await readFile(p)), sha(data));
    const st = await stat(p);
    assert.equal(st.mode & 0o777, 0o640, 'mode of the replaced file kept');
    assert.equal(st.mtime.getTime(), mtime.getTime());
    assert.deepEqual(await readdir(d), ['big'], 'no temp file left');
  });

  it('createReadStream reads ranges with several requests in flight', async () => {
    const d = await fresh();
    const data = randomBytes(600 * 1024);
    await writeFile(join(d, 'f'), data);
    const chunks: Buffer[] = [];
    const inFlight = await maxInFlight(async () => {
      for await (const c of client.createReadStream(join(d, 'f'), { chunkSize: 16 * 1024, window: 6 }))
        chunks.push(c as Buffer);
    });
    assert.equal(sha(Buffer.concat(chunks)), sha(data));
    assert.ok(inFlight >= 2 && inFlight <= 7, `${inFlight} requests in flight (window 6)`);
    const part: Buffer[] = [];
    for await (const c of client.createReadStream(join(d, 'f'), { start: 1000, end: 200_000 }))
      part.push(c as Buffer);
    assert.deepEqual(Buffer.concat(part), data.subarray(1000, 200_001), 'end is inclusive');
    const empty: Buffer[] = [];
    for await (const c of client.createReadStream(join(d, 'f'), { start: data.length }))
      empty.push(c as Buffer);
    assert.equal(Buffer.concat(empty).length, 0);
  });

  it('createReadStream on a missing file fails the pipeline with NotFound', async () => {
    const d = await fresh();
    const sink = new (await import('node:stream')).PassThrough();
    sink.resume();
    await assert.rejects(pipeline(client.createReadStream(join(d, 'nope')), sink), (e: unknown) =>
      isRemoteError(e, 'NotFound'),
    );
    assert.throws(() => client.createReadStream(join(d, 'x'), { start: -1 }), RangeError);
    assert.throws(() => client.createReadStream(join(d, 'x'), { window: 0 }), RangeError);
  });

  it('createWriteStream writes to a temp name with a window in flight and moves it into place on finish', async () => {
    const d = await fresh();
    const p = join(d, 'out.bin');
    const data = randomBytes(2 * 1024 * 1024);
    const ws = client.createWriteStream(p, { window: 4, mode: 0o600 });
    let sawTargetEarly = true;
    const inFlight = await maxInFlight(async () => {
      const source = Readable.from(
        (async function* () {
          for (let off = 0; off < data.length; off += 100_000) {
            yield data.subarray(off, off + 100_000);
            if (off === 1_000_000) sawTargetEarly = await client.exists(p);
          }
        })(),
      );
      await pipeline(source, ws);
    });
    assert.equal(sawTargetEarly, false, 'the target does not exist before finish');
    assert.ok(inFlight >= 2, `${inFlight} requests in flight`);
    assert.equal(ws.bytesWritten, data.length);
    assert.equal(sha(await readFile(p)), sha(data));
    assert.equal((await stat(p)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(d), ['out.bin']);
  });

  it('an aborted write stream leaves the target untouched and removes its temp file', async () => {
    const d = await fresh();
    const p = join(d, 'keep.txt');
    await writeFile(p, 'precious');
    const ac = new AbortController();
    const ws = client.createWriteStream(p, { signal: ac.signal });
    const source = Readable.from(
      (async function* () {
        for (let i = 0; i < 50; i++) {
          yield randomBytes(32 * 1024);
          if (i === 10) ac.abort();
          await delay(1);
        }
      })(),
    );
    await assert.rejects(
      pipeline(source, ws),
      (e: unknown) => e instanceof AbortError || (e as Error).name === 'AbortError',
    );
    await delay(50);
    for (let i = 0; i < 50 && (await readdir(d)).length > 1; i++) await delay(20);
    assert.equal(await readFile(p, 'utf8'), 'precious');
    assert.deepEqual(await readdir(d), ['keep.txt'], 'temp file deleted');
  });

  it('a write stream onto a directory fails with IsDirectory and writes nothing', async () => {
    const d = await fresh();
    await mkdir(join(d, 'dir'));
    const ws = client.createWriteStream(join(d, 'dir'));
    await assert.rejects(pipeline(Readable.from([Buffer.from('x')]), ws), (e: unknown) =>
      isRemoteError(e, 'IsDirectory'),
    );
    for (let i = 0; i < 50 && (await readdir(d)).length > 1; i++) await delay(20);
    assert.deepEqual(await readdir(d), ['dir']);
  });
});
