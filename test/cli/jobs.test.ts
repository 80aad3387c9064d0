/**
 * `outpost ext push`, `outpost job`, `outpost sync` and `put` of a directory
 * of many small files, against a real agent; `job` and `ext push` against a
 * contract-only agent say what it lacks.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContractAgent } from '../client/contract-agent.js';
import { packExtension } from '../helpers/upack.js';
import { type CliAgent, cli, oneLineError, startCliAgent } from './helpers.js';

let a: CliAgent;
let env: NodeJS.ProcessEnv;
before(async () => {
  a = await startCliAgent();
  env = { OUTPOST_KEY: a.keyHex };
});
after(() => a.stop());

describe('outpost ext push and job', () => {
  it('pushes the example extension, then runs its job with live logs and the result on stdout', async () => {
    const pkg = await packExtension(join(a.root, 'example.upack'));
    const pushed = await cli(['ext', 'push', pkg, a.target], env, 60_000);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.match(pushed.stderr, /ext push: 1 package\(s\), .* stored on 127\.0\.0\.1:\d+ for BuildMaster/);
    const [ok, missing, failed] = await Promise.all([
      cli(['job', a.target, 'example.hello', '--data', '{"name":"cli","lines":2}'], env, 60_000),
      cli(['job', a.target, 'nope.none'], env, 60_000),
      cli(['job', a.target, 'example.fail'], env, 60_000),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'hello, cli');
    assert.match(ok.stderr, /^\[info\] line 1 of 2\n\[info\] line 2 of 2\n/);
    assert.equal(missing.code, 3);
    assert.match(oneLineError(missing), /"nope\.none" is not installed.*example\.hello/);
    assert.equal(failed.code, 3);
    assert.match(oneLineError(failed), /Internal: .*failed on purpose/);
  });

  it('job and sync fan out to a group: a line per host, a summary, exit 4 when one host fails', async () => {
    const hosts = join(a.root, 'hosts.toml');
    const port = a.target.split(':').pop();
    const alias = (n: string, p: string | undefined) => `[hosts.${n}]\naddress = "127.0.0.1"\nport = ${p}\n`;
    // `down` is a port nobody listens on: that host fails, the others still run.
    await writeFile(
      hosts,
      `${alias('g1', port)}\n${alias('g2', port)}\n${alias('down', '1')}\n[groups]\ng = ["g1", "g2"]\nsome = ["g1", "down"]\n`,
    );
    const genv = { ...env, OUTPOST_CONFIG: hosts };
    const src = join(a.root, 'fan-src');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.txt'), 'a');
    const pkg = join(a.root, 'example.upack');
    const list = join(a.root, 'fleet.txt');
    await writeFile(list, 'g1\ndown\n');
    const [job, sync, partial, push, pushList] = await Promise.all([
      cli(['job', '@g', 'example.hello', '--data', '{"name":"g","lines":1}'], genv, 60_000),
      cli(['sync', src, '@g:fan-dst', '--dry-run'], genv, 60_000),
      cli(['job', '@some', 'example.hello', '--data', '{"name":"s","lines":1}'], genv, 60_000),
      cli(['ext', 'push', pkg, '@g', '--parallel', '1'], genv, 60_000),
      // --hosts without a host argument: every path is a package; --json lines.
      cli(['ext', 'push', pkg, '--hosts', list, '--json'], genv, 60_000),
    ]);
    assert.equal(push.code, 0, push.stderr);
    assert.match(push.stderr, /^g1 +1 package\(s\), .* stored for BuildMaster/m);
    assert.match(push.stderr, /^g2 +1 package\(s\)/m);
    assert.match(push.stderr, /all 2 hosts succeeded/);
    assert.equal(pushList.code, 4, pushList.stderr);
    const records = pushList.stdout
      .trim()
      .split('\n')
      .map(
        (l) => JSON.parse(l) as { type: string; host?: string; ok?: boolean; data?: { packages: string[] } },
      );
    const byHost = new Map(records.filter((r) => r.type === 'result').map((r) => [r.host, r]));
    assert.equal(byHost.get('g1')?.ok, true, pushList.stdout);
    assert.deepEqual(byHost.get('g1')?.data?.packages, ['example.upack']);
    assert.equal(byHost.get('down')?.ok, false, pushList.stdout);
    assert.deepEqual(records.at(-1), { type: 'summary', hosts: 2, failed: 1, interrupted: false });
    assert.equal(job.code, 0, job.stderr);
    for (const h of ['g1', 'g2']) {
      assert.match(job.stdout, new RegExp(`${h}.*hello, g`), job.stdout);
      assert.match(job.stderr, new RegExp(`${h}.*line 1 of 1`), job.stderr);
      assert.match(sync.stdout, new RegExp(`${h}.*would send 1 file`), sync.stdout);
    }
    assert.equal(sync.code, 0, sync.stderr);
    assert.equal(partial.code, 4, partial.stderr);
    assert.match(partial.stdout, /g1.*hello, s/);
    assert.match(partial.stderr, /down/);
  });
});

describe('outpost sync and put of many small files', () => {
  it('sync sends what changed, then nothing; --dry-run --delete lists without changing', async () => {
    const src = join(a.root, 'site');
    await mkdir(join(src, 'css'), { recursive: true });
    await writeFile(join(src, 'index.html'), '<h1>hi</h1>');
    await writeFile(join(src, 'css', 'a.css'), 'a{}');
    const first = await cli(['sync', src, a.remote('www')], env, 60_000);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^sync: sent 2 files \(\d+ B\), 0 unchanged in /m);
    assert.equal(await readFile(join(a.root, 'www', 'css', 'a.css'), 'utf8'), 'a{}');
    await writeFile(join(a.root, 'www', 'old.txt'), 'old');
    const [again, dry] = await Promise.all([
      cli(['sync', src, a.remote('www')], env, 60_000),
      cli(['sync', src, a.remote('www'), '--delete', '--dry-run'], env, 60_000),
    ]);
    assert.match(again.stdout, /^sync: sent 0 files \(0 B\), 2 unchanged in /m);
    assert.match(dry.stdout, /^would delete old\.txt$/m);
    assert.match(dry.stdout, /would send 0 files .*, would delete 1 in/);
    assert.equal(await readFile(join(a.root, 'www', 'old.txt'), 'utf8'), 'old');
  });

  it('put of a directory of many small files goes as one archive', async () => {
    const src = join(a.root, 'many');
    await mkdir(src);
    for (let i = 0; i < 40; i++) await writeFile(join(src, `f${i}.txt`), `${i}`);
    const r = await cli(['put', src, a.remote('many-out')], env, 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(a.root, 'many-out', 'f39.txt'), 'utf8'), '39');
  });
});

describe('against a contract-only agent', () => {
  let agent: ContractAgent;
  before(async () => {
    agent = await new ContractAgent().start();
  });
  after(() => agent?.stop());

  it('job and ext push say that the agent does not run jobs', async () => {
    const target = `127.0.0.1:${agent.port}`;
    const pkg = join(a.root, 'example.upack');
    const [job, push] = await Promise.all([
      cli(['job', target, 'example.hello', '--mode', 'none'], {}, 60_000),
      cli(['ext', 'push', pkg, target, '--mode', 'none'], {}, 60_000),
    ]);
    assert.equal(job.code, 3);
    assert.match(oneLineError(job), /does not run jobs/);
    assert.equal(push.code, 3, push.stderr);
    assert.match(oneLineError(push), /stored the package\(s\) but does not run jobs/);
  });
});
