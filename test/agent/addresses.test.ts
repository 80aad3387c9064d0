/**
 * Listener/AllowedAddresses against real `outpost serve` processes listening
 * on :: (dual stack), so IPv4 clients arrive as IPv4-mapped IPv6 addresses.
 * Only loopback addresses are ever connected to.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeClientHello } from '../../src/protocol/index.js';
import { rawExchange, startAgentProcess, TestClient } from '../helpers/agent.js';

describe('AllowedAddresses', () => {
  it('refuses 127.0.0.1 and ::1 when only 10.0.0.0/8 is allowed, before reading a byte', async (t) => {
    const agent = await startAgentProcess({ mode: 'aes', address: '::', allowedAddresses: ['10.0.0.0/8'] });
    t.after(() => agent.stop());
    for (const host of ['127.0.0.1', '::1']) {
      const r = await rawExchange(host, agent.port, [encodeClientHello()], { waitMs: 3000 });
      assert.equal(r.closed, true, `${host} refused`);
      assert.equal(r.received.length, 0);
      await assert.rejects(agent.connect({ timeoutMs: 3000 }));
    }
    const rec = await agent.waitForLog((l) => String(l.msg).includes('AllowedAddresses'));
    assert.ok(['127.0.0.1', '::1'].includes(String(rec.remote)));
  });

  it('serves 127.0.0.1 (IPv4-mapped) and ::1 when they are allowed', async (t) => {
    const agent = await startAgentProcess({
      mode: 'aes',
      address: '::',
      allowedAddresses: ['127.0.0.1', '::1/128'],
    });
    t.after(() => agent.stop());
    for (const host of ['127.0.0.1', '::1']) {
      const c = await agent.connect({ host });
      const client = new TestClient(c.connection);
      await client.ping();
      client.close();
    }
  });
});
