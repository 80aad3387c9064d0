/**
 * spawn / exec against a real agent: output streams, stdin, environment,
 * shell, exit codes and signals, kill and AbortSignal, truncation, and
 * backpressure from an unread stdout all the way to the child.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AbortError, type AgentClient, isRemoteError, TimeoutError } from '../../src/index.js';
import { until } from '../agent/e2e-helpers.js';
import { type ClientAgent, delay, internals, startClientAgent } from './helpers.js';

const NODE = process.execPath;
const EMIT = fileURLToPath(new URL('../fixtures/processes/emit.mjs', import.meta.url));

describe('AgentClient processes', () => {
  let env: ClientAgent;
  let client: AgentClient;
  let cwd: string;
  before(async () => {
    env = await startClientAgent();
    client = await env.connect();
    cwd = join(env.root, 'work');
    await mkdir(cwd);
  });
  after(async () => {
    await client?.close();
    await env?.stop();
  });

  it('exec collects stdout, stderr and the exit code', async () => {
    const ok = await client.exec('echo', ['hello', 'world'], { cwd, encoding: 'utf8' });
    assert.deepEqual(ok, { code: 0, signal: null, stdout: 'hello world\n', stderr: '', truncated: false });
    const failed = await client.exec('sh', ['-c', 'echo oops >&2; exit 3'], { cwd });
    assert.equal(failed.code, 3);
    assert.ok(Buffer.isBuffer(failed.stderr));
    assert.equal(failed.stderr.toString(), 'oops\n');
  });

  it('exec passes input, cwd, env, clearEnv and shell', async () => {
    const cat = await client.exec('cat', [], { cwd, input: 'piped in', encoding: 'utf8' });
    assert.equal(cat.stdout, 'piped in');
    const pwd = await client.exec('pwd', [], { cwd, encoding: 'utf8' });
    assert.equal(pwd.stdout.trim(), cwd);
    const env1 = await client.exec('sh', ['-c', 'echo "$GREETING:$HOME"'], {
      cwd,
      env: { GREETING: 'hi', UNSET: undefined },
      encoding: 'utf8',
    });
    assert.equal(env1.stdout.trim(), `hi:${process.env.HOME ?? ''}`);
    const env2 = await client.exec('/usr/bin/env', [], {
      cwd,
      env: { ONLY: '1' },
      clearEnv: true,
      encoding: 'utf8',
    });
    assert.equal(env2.stdout.trim(), 'ONLY=1');
    const shell = await client.exec('echo', ['a b', '$HOME'], { cwd, shell: true, encoding: 'utf8' });
    assert.equal(shell.stdout, 'a b $HOME\n', 'arguments are quoted for the shell');
  });

  it('exec cuts output beyond maxOutput and flags it', async () => {
    const r = await client.exec(NODE, ['-e', 'process.stdout.write("x".repeat(300000))'], {
      cwd,
      maxOutput: 1000,
    });
    assert.equal(r.code, 0);
    assert.equal(r.truncated, true);
    assert.equal(r.stdout.length, 1000);
    await assert.rejects(client.exec('true', [], { maxOutput: -1 }), RangeError);
  });

  it('spawn streams output, takes stdin and reports the exit', async () => {
    const proc = await client.spawn('cat', [], { cwd, stdin: true });
    assert.ok(proc.pid > 0);
    assert.ok(proc.stdin);
    proc.stdin.write('line 1\n');
    proc.stdin.end('line 2\n');
    let out = '';
    for await (const chunk of proc.stdout) out += chunk;
    assert.equal(out, 'line 1\nline 2\n');
    assert.deepEqual(await proc.exited, { code: 0, signal: null });
    assert.deepEqual(proc.exitStatus, { code: 0, signal: null });
    const noStdin = await client.spawn('true', [], { cwd });
    assert.equal(noStdin.stdin, null);
    noStdin.stdout.resume();
    noStdin.stderr.resume();
    assert.equal((await noStdin.exited).code, 0);
  });

  it('kill ends the process tree; spawn with a signal kills on abort', async () => {
    const proc = await client.spawn('sh', ['-c', 'sleep 30 & sleep 30; wait'], { cwd });
    proc.stdout.resume();
    await proc.kill();
    const exit = await proc.exited;
    assert.equal(exit.code, null);
    assert.ok(exit.signal === 'SIGTERM' || exit.signal === 'SIGKILL', String(exit.signal));
    const list = await client.listProcesses();
    assert.equal(list.find((p) => p.token === proc.token)?.running, false);

    const ac = new AbortController();
    const sleeper = await client.spawn('sleep', ['30'], { cwd, signal: ac.signal });
    ac.abort();
    assert.notEqual((await sleeper.exited).signal, null);
  });

  it('exec rejects with AbortError or TimeoutError once the process is gone', async () => {
    const ac = new AbortController();
    const started = Date.now();
    const p = client.exec('sleep', ['30'], { cwd, signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(p, (e: unknown) => e instanceof AbortError);
    await assert.rejects(
      client.exec('sleep', ['30'], { cwd, signal: AbortSignal.timeout(150) }),
      (e: unknown) => e instanceof TimeoutError,
    );
    // Both calls ended on their signal, long before the 30 s sleeps would have.
    assert.ok(Date.now() - started < 25_000);
  });

  it('spawn of a missing program rejects with the wire error', async () => {
    await assert.rejects(client.spawn('definitely-not-a-program-xyz', [], { cwd }), (e: unknown) => {
      assert.ok(isRemoteError(e), String(e));
      assert.equal(e.command, 'StartProcess');
      return true;
    });
    await assert.rejects(client.spawn('', []), { name: 'TypeError', message: /file/ });
    await assert.rejects(client.spawn('echo', [1 as unknown as string]), {
      name: 'TypeError',
      message: /args/,
    });
  });

  it('processes get unique tokens and run concurrently', async () => {
    const procs = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        client.exec('sh', ['-c', `sleep 0.2; echo ${i}`], { cwd, encoding: 'utf8' }),
      ),
    );
    assert.deepEqual(
      procs.map((p) => p.stdout.trim()),
      ['0', '1', '2', '3', '4', '5'],
    );
    const a = await client.spawn('true', [], { cwd });
    const b = await client.spawn('true', [], { cwd });
    assert.notEqual(a.token, b.token);
    for (const p of [a, b]) p.stdout.resume();
    await Promise.all([a.exited, b.exited]);
  });

  it('an unread stdout pauses the connection instead of buffering, and nothing is lost', async () => {
    const size = 6 * 1024 * 1024;
    const proc = await client.spawn(NODE, [EMIT, String(size)], { cwd, highWaterMark: 64 * 1024 });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    // The child fills our 64 KiB window, then the client stops reading its socket (no fixed
    // delay: a loaded machine may take seconds to start the child).
    await until(() => internals(client).channel.conn?.isPaused === true, 30_000, 'the socket to pause');
    await delay(200);
    const conn = internals(client).channel.conn;
    assert.equal(conn?.isPaused, true, 'the socket stays paused while stdout is full');
    assert.equal(proc.exitStatus, null, 'the child is blocked, not finished');
    assert.ok(proc.stdout.readableLength <= 64 * 1024 + 64 * 1024, `buffered ${proc.stdout.readableLength}`);
    const hash = createHash('sha256');
    let total = 0;
    for await (const chunk of proc.stdout) {
      hash.update(chunk as Buffer);
      total += (chunk as Buffer).length;
    }
    assert.deepEqual(await proc.exited, { code: 0, signal: null });
    assert.equal(total, size);
    assert.equal(hash.digest('hex'), stderr);
    assert.equal(internals(client).channel.conn?.isPaused, false);
  });
});
