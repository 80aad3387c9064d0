/**
 * Session lifetimes and many sessions at once, end to end against the real
 * `outpost serve` process (PROTOCOL.md §7): DetachedSessionTimeout and
 * SessionIdleTimeout, a running process holding a session, 8 sessions × 3
 * product types each with its own host.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentType, decodeResult, type RequestOf, type ResultOf } from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';
import { alive, childrenOf, exitedOf, startProcess, until } from './e2e-helpers.js';

const OTTER = AgentType.Otter;

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
    const { reply, pid } = await startProcess(c, OTTER, 5, 'sleep', ['60']);
    assert.equal(reply.kind, 'response');
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
    await c.call(OTTER, 'FileExists', { path: join(agent.dir, 'x') });
    const t0 = Date.now();
    await c.closed;
    const waited = Date.now() - t0;
    assert.ok(waited >= 1000, `closed after ${waited} ms, not before the idle timeout`);
  });

  test('a running process keeps an attached session from idling out', async () => {
    const conn = await agent.connect();
    const c = new TestClient(conn.connection);
    const token = 9;
    await startProcess(c, OTTER, token, 'sleep', ['3']);
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

  test('8 sessions × 3 product types, each with its own host, all answered', async () => {
    const clients = await Promise.all(
      Array.from({ length: 8 }, async () => new TestClient((await agent.connect()).connection)),
    );
    // 24 host processes start at once on 2 cores: allow them time.
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
    const results = await Promise.all(
      clients.flatMap((c, i) =>
        [AgentType.Otter, AgentType.BuildMaster, AgentType.Hedgehog].map(async (t) => {
          const path = join(agent.dir, `s${i}-t${t}.txt`);
          await call(c, t, 'WriteAllBytes', {
            path,
            contents: Buffer.from(`${i}/${t}`),
            lastWriteUtc: null,
            mode: null,
          });
          const back = (await call(c, t, 'ReadAllBytes', { path })) as ResultOf<'ReadAllBytes'>;
          return Buffer.from(back.contents).toString();
        }),
      ),
    );
    assert.deepEqual(
      results,
      clients.flatMap((_c, i) => [1, 2, 3].map((t) => `${i}/${t}`)),
    );
    assert.ok(childrenOf(agent.child.pid!).length >= 24, 'a host per session and product type');
    for (const c of clients) c.close();
  });
});
