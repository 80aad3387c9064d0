/**
 * What `close()` leaves on the agent (issue 18, item 2): by default it ends
 * its session (CloseSession), so the session's hosts go too; with
 * `keepSession: true` the session stays for a later resume. And the probe's
 * scenario (15 rounds here; the probe ran 40): rounds of connect, exists(), close() leave a small bounded
 * number of host processes, not one (or two) per round.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { alive, childrenOf, until } from '../agent/e2e-helpers.js';
import { type ClientAgent, startClientAgent } from './helpers.js';

describe('AgentClient close()', () => {
  let env: ClientAgent;
  before(async () => {
    env = await startClientAgent();
  });
  after(async () => {
    await env?.stop();
  });

  it('ends the session by default: it cannot be resumed, and its process is terminated', async () => {
    const first = await env.connect();
    const id = first.sessionId;
    const proc = await first.spawn('sleep', ['30']);
    const exited = proc.exited.catch((e: unknown) => e);
    await first.close();
    assert.ok((await exited) instanceof Error, 'the followed process is lost to the client');
    await until(() => !alive(proc.pid), 20_000, 'the process to end with its session');
    const second = await env.connect({ sessionId: id });
    try {
      assert.notEqual(second.sessionId, id, 'the session is gone: a new one is granted');
    } finally {
      await second.close();
    }
  });

  it('keeps the session with keepSession: true, for a later resume', async () => {
    const first = await env.connect();
    const id = first.sessionId;
    await first.close({ keepSession: true });
    const second = await env.connect({ sessionId: id });
    try {
      assert.equal(second.sessionId, id, 'the same session is granted');
      assert.equal(await second.exists(join(env.root, 'nothing')), false);
    } finally {
      await second.close();
    }
  });

  it('the next session is served by the host of a session that ended holding nothing (no boot), a fresh one after a session left a process', async () => {
    const hostOf = async (): Promise<number> => {
      const c = await env.connect({ timeoutMs: 20_000 });
      try {
        const r = await c.exec('sh', ['-c', 'echo $PPID'], { encoding: 'utf8' });
        return Number(r.stdout.trim());
      } finally {
        await c.close();
      }
    };
    // Earlier tests' hosts ended: the spares they start a second later (SPARE_REFILL_DELAY_MS)
    // would fill the pool's one spare place first. Let those timers pass.
    await hostOf();
    await new Promise((r) => setTimeout(r, 1500));
    const a = await hostOf();
    const b = await hostOf();
    assert.ok(a > 0);
    assert.equal(b, a, 'the same host process served both sessions');
    // A session that ends with a process still running: its host ends with it, never reused.
    const c = await env.connect({ timeoutMs: 20_000 });
    const sleeper = await c.spawn('sleep', ['30']);
    const lost = sleeper.exited.catch(() => {});
    const pid = Number((await c.exec('sh', ['-c', 'echo $PPID'], { encoding: 'utf8' })).stdout.trim());
    assert.equal(pid, a, 'this session took the recycled host');
    await c.close();
    await lost;
    await until(() => !alive(a), 20_000, 'the host that held a process to exit');
    const d = await hostOf();
    assert.notEqual(d, a, 'a new host');
  });

  it('15 rounds of connect, exists(), close() leave a small bounded number of host processes', async () => {
    const agentPid = env.agent.child.pid!;
    for (let i = 0; i < 15; i++) {
      const client = await env.connect({ timeoutMs: 20_000 });
      assert.equal(await client.exists(join(env.root, `none-${i}`)), false);
      await client.close();
    }
    // Sessions end with close(): their hosts exit; the warm spare (1) may stay.
    await until(() => childrenOf(agentPid).length <= 2, 15_000, 'the hosts of closed sessions to exit');
    assert.ok(childrenOf(agentPid).length <= 2, `${childrenOf(agentPid).length} host processes left`);
  });
});
