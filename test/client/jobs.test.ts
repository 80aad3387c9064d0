/**
 * Jobs end to end through the real agent: the example extension packed by
 * its own script, shipped with UpdateAgent, run with live logs; a cancel
 * that leaves nothing running; a dropped link mid-job with every later log
 * line and the result delivered after the client resumes; a job that takes
 * its host down (HostCrashed, and the next job gets a fresh host).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AgentClient, RemoteError } from '../../src/index.js';
import { packExtension } from '../helpers/upack.js';
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

describe('jobs through the agent', () => {
  let env: ClientAgent;
  let client: AgentClient;
  let root: string;

  before(async () => {
    env = await startClientAgent();
    client = await env.connect({ reconnect: { retries: 20, delayMs: 300 } });
    root = await client.getBaseWorkingDirectory();
    const file = await packExtension(join(env.root, 'example.upack'));
    await client.updateAgent({ extensions: [{ name: 'example.upack', data: await readFile(file) }] });
  });
  after(async () => {
    await client?.close();
    await env?.stop();
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
