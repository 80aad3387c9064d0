/**
 * Sessions and product host processes, end to end against the real
 * `outpost serve` process: resume with a running process, session isolation,
 * host crashes, timeouts, and many sessions × product types at once.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  decodeEventBody,
  decodeReply,
  decodeResult,
  ErrorKind,
  encodeRequest,
  type Reply,
  type RequestOf,
  type ResultOf,
} from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, ms = 10000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Direct children of `pid` (host processes of the agent). */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function stdoutText(events: Reply[] | undefined): string {
  return (events ?? [])
    .filter((e) => e.kind === 'event' && e.event === 1)
    .map((e) => (e.kind === 'event' ? Buffer.from(decodeEventBody('Stdout', e.body).data).toString() : ''))
    .join('');
}

function exitedOf(events: Reply[] | undefined) {
  const last = events?.at(-1);
  if (last?.kind === 'event' && last.event === 3) return decodeEventBody('Exited', last.body);
  return null;
}

const BM = 1;

describe('sessions and host processes (real agent)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'aes', detachedSessionTimeout: 30, sessionIdleTimeout: 60 });
    // Confine the product side to the test's own directory.
  });
  after(async () => {
    await agent?.stop();
  });

  test('resume after a dropped connection: the running process keeps its output', async () => {
    const a = await agent.connect();
    const c1 = new TestClient(a.connection);
    const token = 4242;
    const script = 'for i in 1 2 3 4 5 6; do echo line$i; sleep 0.2; done';
    const started = await c1.sendRaw(
      encodeRequest(BM, token, 'StartProcess', {
        fileName: 'sh',
        arguments: ['-c', script],
        workingDirectory: agent.dir,
        environment: {},
        flags: 0,
      }),
      token,
    );
    assert.equal(started.kind, 'response');
    await until(() => stdoutText(c1.events.get(token)).includes('line1'), 5000, 'first line');
    c1.connection.destroy(new Error('simulated network drop'));
    await c1.closed;
    const before = stdoutText(c1.events.get(token));
    await sleep(500); // output produced while detached is buffered by the agent

    const b = await agent.connect({ sessionId: a.sessionId });
    assert.equal(b.sessionId, a.sessionId, 'the same session is resumed');
    const c2 = new TestClient(b.connection);
    // Any request attaches the connection; the buffered output follows.
    await c2.call(BM, 'DirectoryExists', { path: agent.dir });
    await until(() => exitedOf(c2.events.get(token)) !== null, 10000, 'Exited on the new connection');
    const all = before + stdoutText(c2.events.get(token));
    assert.equal(all, 'line1\nline2\nline3\nline4\nline5\nline6\n');
    assert.deepEqual(exitedOf(c2.events.get(token)), { exitCode: 0, signal: null });
    c2.close();
  });

  test('two sessions cannot use each other’s handles', async () => {
    const file = join(agent.dir, 'secret.txt');
    await writeFile(file, 'only for A');
    const a = new TestClient((await agent.connect()).connection);
    const b = new TestClient((await agent.connect()).connection);
    const { handle } = await a.call(BM, 'OpenFile', { path: file, fileMode: 3, fileAccess: 1 });
    const stolen = await b.request(BM, 'ReadFile', { handle, position: 0, count: 100 });
    assert.equal(stolen.kind, 'error');
    if (stolen.kind === 'error') assert.equal(stolen.errorKind, ErrorKind.InvalidHandle);
    const mine = await a.call(BM, 'ReadFile', { handle, position: 0, count: 100 });
    assert.equal(Buffer.from(mine.data).toString(), 'only for A');
    a.close();
    b.close();
  });

  test('SIGKILL of a host: HostCrashed for its process, its tree killed, then a fresh host', async () => {
    const conn = await agent.connect();
    const c = new TestClient(conn.connection);
    const onToken: Reply[] = [];
    const token = 777;
    conn.connection.on('message', (m) => {
      const r = decodeReply(m);
      if (r.token === token) onToken.push(r);
    });
    const r = await c.sendRaw(
      encodeRequest(BM, token, 'StartProcess', {
        fileName: 'sleep',
        arguments: ['30'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
      token,
    );
    assert.equal(r.kind, 'response');
    const sleeper = r.kind === 'response' ? decodeResult('StartProcess', r.body).pid : 0;
    assert.ok(alive(sleeper));
    // The host is the sleeper's parent (the agent may also keep a warm spare).
    const hostPid = Number(
      execFileSync('ps', ['-o', 'ppid=', '-p', String(sleeper)], { encoding: 'utf8' }).trim(),
    );
    assert.ok(
      childrenOf(agent.child.pid!).includes(hostPid),
      'the process runs under a host child of the agent',
    );
    process.kill(hostPid, 'SIGKILL');
    await until(() => onToken.some((x) => x.kind === 'error'), 5000, 'HostCrashed on the process token');
    const err = onToken.find((x) => x.kind === 'error');
    assert.ok(err?.kind === 'error' && err.errorKind === ErrorKind.HostCrashed);
    await until(() => !alive(sleeper), 5000, 'the orphaned process tree to be killed');
    // The agent keeps serving, and the session gets a fresh host.
    assert.deepEqual(await c.call(BM, 'DirectoryExists', { path: agent.dir }), { exists: true });
    assert.ok(alive(agent.child.pid!));
    c.close();
  });
});

describe('session lifetimes (real agent, short timeouts)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'none', detachedSessionTimeout: 1, sessionIdleTimeout: 1.5 });
  });
  after(async () => {
    await agent?.stop();
  });

  test('a detached session ends after DetachedSessionTimeout and its processes are terminated', async () => {
    const conn = await agent.connect();
    const c = new TestClient(conn.connection);
    const token = 5;
    const r = await c.sendRaw(
      encodeRequest(BM, token, 'StartProcess', {
        fileName: 'sleep',
        arguments: ['60'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
      token,
    );
    assert.equal(r.kind, 'response');
    const pid = r.kind === 'response' ? decodeResult('StartProcess', r.body).pid : 0;
    c.close();
    await c.closed;
    await until(() => !alive(pid), 8000, 'the process to be terminated with its session');
    const again = await agent.connect({ sessionId: conn.sessionId });
    assert.notEqual(again.sessionId, conn.sessionId, 'the session is gone: a new ID is granted');
    again.connection.close();
  });

  test('an attached session with no requests and no processes ends after SessionIdleTimeout', async () => {
    const conn = await agent.connect();
    const c = new TestClient(conn.connection);
    await c.call(BM, 'FileExists', { path: join(agent.dir, 'x') });
    const t0 = Date.now();
    await c.closed;
    const waited = Date.now() - t0;
    assert.ok(waited >= 1000 && waited < 6000, `closed after ${waited} ms`);
  });

  test('a running process keeps an attached session from idling out', async () => {
    const conn = await agent.connect();
    const c = new TestClient(conn.connection);
    const token = 9;
    await c.sendRaw(
      encodeRequest(BM, token, 'StartProcess', {
        fileName: 'sleep',
        arguments: ['3'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
      token,
    );
    await until(() => exitedOf(c.events.get(token)) !== null, 8000, 'the process to finish');
    assert.equal(c.closeError, undefined);
    assert.equal(c.connection.closed, false, 'still connected after 3 s with a 1.5 s idle timeout');
    c.close();
  });
});

describe('many sessions and product types at once (real agent)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'aes' });
  });
  after(async () => {
    await agent?.stop();
  });

  test('20 sessions × 3 product types, each with its own host, all answered', async () => {
    const clients = await Promise.all(
      Array.from({ length: 20 }, async () => new TestClient((await agent.connect()).connection)),
    );
    // 60 host processes start at once on 2 cores: allow them time.
    const call = async <N extends 'WriteAllBytes' | 'ReadAllBytes'>(
      c: TestClient,
      t: number,
      name: N,
      args: RequestOf<N>,
    ) => {
      const r = await c.request(t, name, args, 60_000);
      if (r.kind !== 'response') throw new Error(`${name} failed: ${JSON.stringify(r)}`);
      return decodeResult(name, r.body);
    };
    const t0 = Date.now();
    const results = await Promise.all(
      clients.flatMap((c, i) =>
        [1, 2, 3].map(async (t) => {
          const path = join(agent.dir, `s${i}-t${t}.txt`);
          await call(c, t, 'WriteAllBytes', {
            path,
            data: Buffer.from(`${i}/${t}`),
            mode: null,
            lastWriteTime: null,
          });
          const back = (await call(c, t, 'ReadAllBytes', { path })) as ResultOf<'ReadAllBytes'>;
          return Buffer.from(back.data).toString();
        }),
      ),
    );
    console.log(`20 sessions x 3 product types answered in ${Date.now() - t0} ms`);
    assert.deepEqual(
      results,
      clients.flatMap((_c, i) => [1, 2, 3].map((t) => `${i}/${t}`)),
    );
    assert.ok(childrenOf(agent.child.pid!).length >= 60, 'a host per session and product type');
    for (const c of clients) c.close();
  });
});
