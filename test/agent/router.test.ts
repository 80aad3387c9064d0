/**
 * The product-router seam, with the agent started in-process (`startAgent`)
 * on a real TCP port: the default router answers Error Unsupported naming
 * the command; a custom router gets each product request with `reply` and
 * `throttle`, and `throttle` really stops the agent reading the connection.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AgentConfig, parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import type { ProductRequestContext, ProductRouter } from '../../src/agent/product.js';
import {
  AgentType,
  ErrorKind,
  encodeRequestRaw,
  encodeResponse,
  PRODUCT_COMMANDS,
} from '../../src/protocol/index.js';
import { connectToAgent } from '../../src/transport/index.js';
import { TestClient, tempDir } from '../helpers/agent.js';

let dir: string;
let config: AgentConfig;
before(async () => {
  dir = await tempDir();
  config = await parseConfig(
    renderConfigXml({ mode: 'none', address: '127.0.0.1', port: 0 }),
    join(dir, 'InedoAgent.config'),
  );
});
after(() => rm(dir, { recursive: true, force: true }));

async function connect(agent: AgentHandle): Promise<TestClient> {
  const c = await connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none' });
  return new TestClient(c.connection);
}

describe('product router seam', () => {
  it('the default router answers Error Unsupported naming the command, never drops', async () => {
    const agent = await startAgent(config, silentLogger());
    try {
      const client = await connect(agent);
      const r = await client.request(AgentType.Otter, 'FileExists', { path: join(dir, 'x') });
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') {
        assert.equal(r.errorKind, ErrorKind.Unsupported);
        assert.equal(r.agentType, AgentType.Otter);
        assert.match(r.message, /Otter command FileExists \(1\) is not supported/);
      }
      const token = client.token();
      const u = await client.sendRaw(
        encodeRequestRaw(AgentType.Hedgehog, token, 250, Buffer.alloc(0)),
        token,
      );
      assert.equal(u.kind, 'error');
      if (u.kind === 'error') assert.equal(u.errorKind, ErrorKind.UnknownCommand);
      client.close();
    } finally {
      await agent.close();
    }
  });

  it('a custom router gets requests with the session, and throttle() stops reading until released', async () => {
    const seen: ProductRequestContext[] = [];
    let release: (() => void) | null = null;
    const closedSessions: string[] = [];
    const router: ProductRouter = {
      handle(ctx) {
        seen.push(ctx);
        if (seen.length === 1) release = ctx.throttle();
        ctx.reply(encodeResponse(ctx.header.agentType, ctx.header.token, Buffer.alloc(0)));
      },
      connectionClosed() {},
      sessionClosed(_s, reason) {
        closedSessions.push(reason);
      },
      async close() {},
    };
    const agent = await startAgent(config, silentLogger(), { router });
    try {
      const client = await connect(agent);
      const replies = [1, 2, 3].map((k) =>
        client.sendRaw(
          encodeRequestRaw(AgentType.BuildMaster, k, PRODUCT_COMMANDS.FileExists.code, Buffer.alloc(1)),
          k,
        ),
      );
      await replies[0];
      await sleep(100);
      assert.equal(seen.length, 1, 'no further request is read while throttled');
      release!();
      await Promise.all(replies);
      assert.equal(seen.length, 3);
      assert.equal(seen[0]!.session, seen[2]!.session);
      assert.equal(seen[1]!.header.token, 2);
      assert.equal(seen[1]!.message[0], AgentType.BuildMaster);
      // Meta requests never reach the router.
      assert.equal((await client.request(AgentType.Meta, 'CloseSession', {})).kind, 'response');
      await client.closed;
      assert.deepEqual(closedSessions, ['closed by the client (CloseSession)']);
    } finally {
      await agent.close();
    }
  });

  it('a throwing router is answered with Error Internal and the agent keeps serving', async () => {
    const router: ProductRouter = {
      handle() {
        throw new Error('router bug');
      },
      connectionClosed() {},
      sessionClosed() {},
      async close() {},
    };
    const agent = await startAgent(config, silentLogger(), { router });
    try {
      const client = await connect(agent);
      const r = await client.request(AgentType.Otter, 'FileExists', { path: 'x' });
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') assert.equal(r.errorKind, ErrorKind.Internal);
      assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
      client.close();
    } finally {
      await agent.close();
    }
  });

  it('refuses to start when Listener/@Enabled is false', async () => {
    const xml = renderConfigXml({ mode: 'none', address: '127.0.0.1', port: 0 }).replace(
      'Enabled="true"',
      'Enabled="false"',
    );
    const off = await parseConfig(xml, join(dir, 'off.config'));
    assert.equal(off.listener.enabled, false);
    await assert.rejects(startAgent(off, silentLogger()), /^ConfigError: Listener\/@Enabled: is "false"/);
  });

  it('close() stops accepting and closes established connections', async () => {
    const agent = await startAgent(config, silentLogger());
    const client = await connect(agent);
    assert.equal(agent.connectionCount, 1);
    await agent.close();
    await client.closed;
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none', timeoutMs: 2000 }),
      /ECONNREFUSED/,
    );
  });
});
