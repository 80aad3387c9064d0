/**
 * Jobs end to end through the real agent: the example extension packed by
 * its own script, shipped with UpdateAgent, run with live logs; a cancel
 * that leaves nothing running; a dropped link mid-job with every later log
 * line and the result delivered after the client resumes; a job that takes
 * its host down (HostCrashed, and the next job gets a fresh host). And
 * agent.sync()/uploadArchive() through the manifest job and one archive
 * stream, and against a contract-only agent (no ExecuteJob) through the
 * contract's own commands.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentClient, RemoteError } from '../../src/index.js';
import { packExtension } from '../helpers/upack.js';
import { ContractAgent, Out } from './contract-agent.js';
import { type ClientAgent, delay, internals, startClientAgent } from './helpers.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true;
  }
}

/** One agent for the whole file. */
let env: ClientAgent;
before(async () => {
  env = await startClientAgent();
});
after(async () => {
  await env?.stop();
});

describe('jobs through the agent', () => {
  let client: AgentClient;
  let root: string;

  before(async () => {
    client = await env.connect({ reconnect: { retries: 20, delayMs: 300 } });
    root = await client.getBaseWorkingDirectory();
    const file = await packExtension(join(env.root, 'example.upack'));
    await client.updateAgent({ extensions: [{ name: 'example.upack', data: await readFile(file) }] });
  });
  after(async () => {
    await client?.close();
  });

  it('runs a shipped extension job with live log lines and its result', async () => {
    const run = client.runJob('example.hello', { name: 'sdk', lines: 3 });
    const lines: string[] = [];
    for await (const l of run.logs) if (l.level === 'info') lines.push(l.text);
    assert.deepEqual(lines, ['line 1 of 3', 'line 2 of 3', 'line 3 of 3']);
    assert.equal((await run.result).toString(), 'hello, sdk');
  });

  it('a canceled job ends with Canceled and leaves nothing running', async () => {
    const ac = new AbortController();
    const run = client.runJob('example.wait', { marker: 'wait.pid' }, { signal: ac.signal });
    const markerPath = join(root, 'wait.pid');
    for await (const l of run.logs) if (l.text.startsWith('started child')) break;
    const pid = Number(await readFile(markerPath, 'utf8'));
    assert.ok(alive(pid));
    ac.abort();
    await assert.rejects(run.result, (e: unknown) => e instanceof RemoteError && e.kind === 'Canceled');
    assert.equal(alive(pid), false, 'the job’s child is gone when Canceled arrives');
  });

  it('survives a dropped connection mid-job: later log lines and the result arrive after the resume', async () => {
    const go = join(root, 'go');
    const run = client.runJob('example.count', { n: 200, waitFor: 'go' });
    const lines: string[] = [];
    const it = run.logs[Symbol.asyncIterator]();
    assert.equal((await it.next()).value?.text, 'waiting');
    const session = client.sessionId;
    internals(client).channel.conn?.socket.destroy();
    await delay(100);
    await writeFile(go, '');
    for (let r = await it.next(); !r.done; r = await it.next()) lines.push(r.value.text);
    assert.deepEqual(
      lines,
      Array.from({ length: 200 }, (_, i) => `count ${i + 1}`),
    );
    assert.equal((await run.result).toString(), 'counted 200');
    assert.equal(client.sessionId, session);
  });

  it('a job that crashes its host is HostCrashed, and the next job gets a fresh host', async () => {
    await assert.rejects(
      client.runJob('example.crash').result,
      (e: unknown) => e instanceof RemoteError && e.kind === 'HostCrashed',
    );
    assert.equal((await client.runJob('example.hello', { lines: 0 }).result).toString(), 'hello, world');
  });

  it('an unknown type says what is installed', async () => {
    await assert.rejects(
      client.runJob('nope').result,
      (e: unknown) =>
        e instanceof RemoteError && e.kind === 'Unsupported' && /example\.hello/.test(e.message),
    );
  });
});

async function tree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
}

describe('sync through the manifest job and one archive', () => {
  let client: AgentClient;
  before(async () => {
    client = await env.connect();
  });
  after(async () => {
    await client?.close();
  });

  it('sends what changed, reports a dry run without changing anything, deletes with delete', async () => {
    const src = join(env.root, 'src');
    const dst = join(env.root, 'dst');
    await tree(src, { 'a.txt': 'a', 'd/b.txt': 'bb', 'd/e/c.txt': 'ccc' });
    await mkdir(join(src, 'empty'));
    const dry = await client.sync(src, dst, { dryRun: true });
    assert.equal(dry.dryRun, true);
    assert.equal(dry.method, 'archive');
    assert.deepEqual(dry.uploaded, ['a.txt', 'd/b.txt', 'd/e/c.txt']);
    await assert.rejects(stat(dst), /ENOENT/);

    const first = await client.sync(src, dst);
    assert.deepEqual(first.uploaded, ['a.txt', 'd/b.txt', 'd/e/c.txt']);
    assert.equal(await readFile(join(dst, 'd', 'e', 'c.txt'), 'utf8'), 'ccc');
    assert.ok((await stat(join(dst, 'empty'))).isDirectory());
    assert.equal(
      Math.round((await stat(join(dst, 'a.txt'))).mtimeMs),
      Math.round((await stat(join(src, 'a.txt'))).mtimeMs),
      'exact last-write time',
    );

    const again = await client.sync(src, dst);
    assert.deepEqual(again.uploaded, []);
    assert.equal(again.unchanged, 3);

    await writeFile(join(src, 'a.txt'), 'A');
    await rm(join(src, 'd', 'e'), { recursive: true });
    await writeFile(join(src, 'd', 'e'), 'now a file');
    await writeFile(join(dst, 'stale.txt'), 'x');
    const dryDelete = await client.sync(src, dst, { delete: true, dryRun: true });
    assert.deepEqual(dryDelete.deleted, ['stale.txt']);
    assert.equal(await readFile(join(dst, 'stale.txt'), 'utf8'), 'x');
    const third = await client.sync(src, dst, { delete: true });
    assert.deepEqual(third.uploaded, ['a.txt', 'd/e']);
    assert.deepEqual(third.deleted, ['stale.txt']);
    assert.equal(await readFile(join(dst, 'a.txt'), 'utf8'), 'A');
    assert.equal(await readFile(join(dst, 'd', 'e'), 'utf8'), 'now a file');
    assert.deepEqual((await readdir(dst)).sort(), ['a.txt', 'd', 'empty']);
    assert.deepEqual(
      (await readdir(env.root)).filter((n) => n.includes('outpost-sync')),
      [],
      'no archive left behind',
    );
  });

  it('syncs odd names (a newline, a leading quote, 250 characters) and then finds them unchanged', async () => {
    const src = join(env.root, 'odd-src');
    const dst = join(env.root, 'odd-dst');
    const long = `${'l'.repeat(100)}/${'n'.repeat(150)}.txt`;
    await tree(src, { 'new\nline.txt': '1', '"quoted.txt': '3', [long]: '4' });
    const first = await client.sync(src, dst);
    assert.equal(first.uploaded.length, 3);
    assert.equal(await readFile(join(dst, long), 'utf8'), '4');
    assert.equal(await readFile(join(dst, 'new\nline.txt'), 'utf8'), '1');
    const again = await client.sync(src, dst);
    assert.deepEqual(again.uploaded, []);
    assert.equal(again.unchanged, 3);
  });

  it('uploadArchive puts a tree of many small files in one stream', async () => {
    const src = join(env.root, 'many');
    const files: Record<string, string> = {};
    for (let i = 0; i < 300; i++) files[`d${i % 7}/f${i}.txt`] = `file ${i}\n`;
    await tree(src, files);
    const dst = join(env.root, 'many-out');
    const r = await client.uploadArchive(src, dst);
    assert.equal(r.method, 'archive');
    assert.equal(r.files, 300);
    assert.equal(await readFile(join(dst, 'd3', 'f10.txt'), 'utf8'), 'file 10\n');
  });
});

describe('sync against a contract-only agent', () => {
  let agent: ContractAgent;
  let client: AgentClient;
  const files = new Map<string, Buffer>();
  before(async () => {
    const ok = (reply: { response(b?: Buffer): void }) => reply.response();
    agent = await new ContractAgent({
      handlers: {
        // DirectoryExists: string path → bool
        3: (args, reply) => {
          const p = args.string();
          reply.response(new Out().bool([...files.keys()].some((f) => f.startsWith(`${p}/`))).done());
        },
        // CreateDirectory
        6: (_a, reply) => ok(reply),
        // DeleteFile
        7: (args, reply) => {
          files.delete(args.string());
          ok(reply);
        },
        // Move: source, target, overwrite
        10: (args, reply) => {
          const from = args.string();
          const to = args.string();
          files.set(to, files.get(from)!);
          files.delete(from);
          ok(reply);
        },
        // WriteAllBytes: path, contents, …
        13: (args, reply) => {
          const p = args.string();
          files.set(p, Buffer.from(args.bytes()));
          ok(reply);
        },
        // GetFileHash: path, algorithm → string
        18: (args, reply) => {
          const data = files.get(args.string()) ?? Buffer.alloc(0);
          reply.response(new Out().string(createHash('sha256').update(data).digest('hex')).done());
        },
      },
    }).start();
    client = await AgentClient.connect({
      host: '127.0.0.1',
      port: agent.port,
      mode: 'none',
      timeoutMs: 5000,
    });
  });
  after(async () => {
    await client?.close();
    await agent?.stop();
  });

  it('falls back to the contract commands (WriteAllBytes, GetFileHash)', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const src = await mkdtemp(join(tmpdir(), 'outpost-sync-'));
    try {
      await tree(src, { 'x.txt': 'x', 'y/z.txt': 'zz' });
      const dry = await client.sync(src, '/srv/new', { dryRun: true });
      assert.equal(dry.method, 'files');
      assert.deepEqual(dry.uploaded, ['x.txt', 'y/z.txt']);
      assert.equal(files.size, 0);
      const r = await client.sync(src, '/srv/new');
      assert.equal(r.method, 'files');
      assert.equal(files.get('/srv/new/y/z.txt')?.toString(), 'zz');
      const put = await client.uploadArchive(src, '/srv/put');
      assert.equal(put.method, 'files');
      assert.equal(files.get('/srv/put/x.txt')?.toString(), 'x');
      assert.equal(agent.frames(2, 60).length, 1, 'ExecuteJob asked once: the answer is remembered');
    } finally {
      await rm(src, { recursive: true, force: true });
    }
  });
});
