/**
 * Many connections against a real `outpost serve`: stalled handshakes must
 * not keep a good client out (caps.test.ts tests the caps in detail), 200
 * connections at once are all served, and
 * SIGTERM stops the agent with exit code 0 within 5 seconds.
 */
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AgentType, encodeClientHello } from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';

const HANDSHAKE_TIMEOUT_S = 10;
const PER_ADDRESS = 32;

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
    agent = await startAgentProcess({ mode: 'aes', handshakeTimeout: HANDSHAKE_TIMEOUT_S });
  });
  after(() => agent?.stop());

  it('150 stalled handshakes from one address do not keep a good client of that address out', async () => {
    const stalled = await openStalled(agent, 150);
    try {
      const c = await agent.connect({ timeoutMs: HANDSHAKE_TIMEOUT_S * 1000 });
      const client = new TestClient(c.connection);
      await client.ping();
      client.close();
      // The cap is real: the agent closed the oldest stalled handshakes of the address to keep 32.
      const deadline = Date.now() + 5000;
      while (stalled.closedByAgent() < 150 - PER_ADDRESS && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok(
        stalled.closedByAgent() >= 150 - PER_ADDRESS,
        `${stalled.closedByAgent()} stalled handshakes were closed`,
      );
      assert.ok(stalled.closedByAgent() < 150, 'not every stalled connection was dropped: the cap allows 32');
    } finally {
      for (const s of stalled.sockets) s.destroy();
    }
  });

  it('serves 200 connections open at once, each pinging', async () => {
    // Opened in waves below the per-address cap (unfinished handshakes are what it counts).
    const clients: { client: TestClient; sessionId: number }[] = [];
    for (let wave = 0; wave < 8; wave++)
      clients.push(
        ...(await Promise.all(
          Array.from({ length: 25 }, async () => {
            const c = await agent.connect({ timeoutMs: 8000 });
            const client = new TestClient(c.connection);
            await client.ping();
            return { client, sessionId: c.sessionId };
          }),
        )),
      );
    const tokens = await Promise.all(
      clients.map(({ client }, i) => client.call(AgentType.Meta, 'Ping', { token: i })),
    );
    assert.deepEqual(
      tokens.map((t) => t.token),
      clients.map((_, i) => i),
    );
    assert.equal(new Set(clients.map((r) => r.sessionId)).size, 200, 'every connection got its own session');
    for (const r of clients) r.client.close();
  });

  it('SIGTERM closes connections and exits 0 by itself', async () => {
    const c = await agent.connect();
    const client = new TestClient(c.connection);
    await client.ping();
    const stopped = await agent.stop('SIGTERM');
    assert.equal(stopped.code, 0);
    assert.equal(stopped.signal, null);
    // stop() sends SIGKILL after 5 s; code 0 and no signal mean the agent exited by itself.
    await client.closed;
    assert.ok(c.connection.closed);
  });
});
