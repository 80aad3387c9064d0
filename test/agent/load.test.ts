/**
 * Many connections against a real `outpost serve`: stalled handshakes must
 * not starve a good client, 200 concurrent clients are all served, and
 * SIGTERM stops the agent with exit code 0 within 5 seconds.
 */
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AgentType, encodeClientHello } from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';

const HANDSHAKE_TIMEOUT_S = 10;
const CAP = 100;

function openStalled(
  agent: AgentProcess,
  n: number,
): Promise<{ sockets: Socket[]; closedByAgent: () => number }> {
  let closed = 0;
  const sockets: Socket[] = [];
  const connected = Array.from(
    { length: n },
    () =>
      new Promise<void>((resolve, reject) => {
        const s = netConnect({ host: agent.host, port: agent.port });
        sockets.push(s);
        s.on('connect', () => {
          // A valid start of a hello, then nothing: a stalled handshake.
          s.write(encodeClientHello().subarray(0, 8));
          resolve();
        });
        s.on('error', () => {});
        s.on('close', () => {
          closed++;
        });
        s.once('error', reject);
      }),
  );
  return Promise.all(connected).then(() => ({ sockets, closedByAgent: () => closed }));
}

describe('load', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({
      mode: 'aes',
      handshakeTimeout: HANDSHAKE_TIMEOUT_S,
      maxConcurrentHandshakes: CAP,
    });
  });
  after(() => agent?.stop());

  it('150 stalled handshakes do not keep a good client waiting', async () => {
    const stalled = await openStalled(agent, 150);
    try {
      const t0 = performance.now();
      const c = await agent.connect({ timeoutMs: HANDSHAKE_TIMEOUT_S * 1000 });
      const client = new TestClient(c.connection);
      assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
      const elapsed = performance.now() - t0;
      client.close();
      // Without eviction the client would wait for a stalled slot's 10 s timeout;
      // with it, at most the stall grace (1 s) plus scheduling.
      assert.ok(elapsed < 3000, `good client served in ${Math.round(elapsed)} ms`);
      // The cap is real: the agent dropped stalled handshakes to make room.
      const deadline = Date.now() + 3000;
      while (stalled.closedByAgent() < 50 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok(stalled.closedByAgent() >= 50, `${stalled.closedByAgent()} stalled handshakes were evicted`);
      assert.ok(
        stalled.closedByAgent() < 150,
        'not every stalled connection was dropped: the cap allows 100',
      );
    } finally {
      for (const s of stalled.sockets) s.destroy();
    }
  });

  it('serves 200 concurrent connections, each pinging', async () => {
    // Let the agent see the stalled sockets of the previous test go.
    await new Promise((r) => setTimeout(r, 100));
    const results = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const c = await agent.connect({ timeoutMs: 8000 });
        const client = new TestClient(c.connection);
        const r = await client.request(AgentType.Meta, 'Ping', {}, 8000);
        return { client, sessionId: c.sessionId, kind: r.kind };
      }),
    );
    assert.equal(results.length, 200);
    assert.ok(results.every((r) => r.kind === 'response'));
    assert.equal(new Set(results.map((r) => r.sessionId)).size, 200, 'every connection got its own session');
    for (const r of results) r.client.close();
  });

  it('SIGTERM closes connections and exits 0 within 5 s', async () => {
    const c = await agent.connect();
    const client = new TestClient(c.connection);
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0);
    assert.equal(stopped.signal, null);
    assert.ok(stopped.elapsedMs < 5000, `exited after ${Math.round(stopped.elapsedMs)} ms`);
    await client.closed;
    assert.ok(c.connection.closed);
  });
});
