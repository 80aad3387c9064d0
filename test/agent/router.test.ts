/**
 * The product-router seam, with the agent started in-process (`startAgent`)
 * on a real TCP port: the default router answers Error Unsupported naming
 * the command; a custom router gets each product request with `reply` and
 * `throttle`, and `throttle` really stops the agent reading the connection;
 * `connectionOpened` comes only after a resumed connection's first valid
 * frame has been answered (§7).
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
  encodeClientMessage,
  encodeEvent,
  encodeProductRequest,
  encodeResponse,
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
  it('the default router answers Error Unsupported naming the command; unknown commands are Unsupported too', async () => {
    const agent = await startAgent(config, silentLogger());
    try {
      const client = await connect(agent);
      const r = await client.request(AgentType.Otter, 'FileExists', { path: join(dir, 'x') });
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') {
        assert.equal(r.errorKind, ErrorKind.Unsupported);
        assert.match(r.message, /Otter command FileExists is not supported/);
      }
      const token = client.token();
      const data = Buffer.alloc(4);
      data.writeInt32LE(token, 0);
      const u = await client.sendRaw(encodeClientMessage(AgentType.Hedgehog, 250, data), token);
      assert.equal(u.kind, 'error');
      if (u.kind === 'error') {
        assert.equal(u.errorKind, ErrorKind.Unsupported);
        assert.match(u.message, /unknown Hedgehog command 250/);
      }
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
        ctx.reply(encodeResponse(ctx.token, 'FileExists', { exists: true }));
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
        client.sendRaw(encodeProductRequest(AgentType.BuildMaster, 'FileExists', k, { path: 'p' }), k),
      );
      await replies[0];
      await sleep(100);
      assert.equal(seen.length, 1, 'no further request is read while throttled');
      release!();
      await Promise.all(replies);
      assert.equal(seen.length, 3);
      assert.equal(seen[0]!.session, seen[2]!.session);
      assert.equal(seen[1]!.token, 2);
      assert.equal(seen[1]!.name, 'FileExists');
      assert.equal(seen[1]!.message[0], AgentType.BuildMaster, 'the raw message is passed on');
      // Meta requests never reach the router.
      assert.equal((await client.request(AgentType.Meta, 'CloseSession', {})).kind, 'meta');
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
      await client.ping();
      client.close();
    } finally {
      await agent.close();
    }
  });

  it('buffered events go to a resumed connection only after its first valid frame', async () => {
    const opened: number[] = [];
    const router: ProductRouter = {
      handle(ctx) {
        ctx.reply(encodeResponse(ctx.token, 'FileExists', { exists: true }));
      },
      connectionOpened(connection) {
        // Stands for the router flushing a resumed session's buffer.
        opened.push(Date.now());
        connection.send(encodeEvent(77, 'Log', { level: 1, text: 'buffered' }));
      },
      connectionClosed() {},
      sessionClosed() {},
      async close() {},
    };
    const agent = await startAgent(config, silentLogger(), { router });
    try {
      const first = await connect(agent);
      await first.ping();
      const id = [...agent.sessions][0]!.id;
      first.close();
      await first.closed;
      const c = await connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none', sessionId: id });
      const again = new TestClient(c.connection);
      await sleep(100);
      assert.equal(again.log.length, 0, 'nothing before the first valid frame');
      assert.equal(opened.length, 1, 'only the first connection opened so far');
      await again.ping();
      await sleep(50);
      assert.equal(opened.length, 2);
      assert.deepEqual(
        again.log.map((r) => r.kind),
        ['meta', 'event'],
        'the reply to the first frame, then the buffered event',
      );
      again.close();
    } finally {
      await agent.close();
    }
  });

  it('refuses to start when Listener/@Enabled is false and nothing is dialed either', async () => {
    const xml = renderConfigXml({ mode: 'none', address: '127.0.0.1', port: 0, listenerEnabled: false });
    await assert.rejects(
      parseConfig(xml, join(dir, 'off.config')),
      /^ConfigError: Listener\/@Enabled: is "false"/,
    );
    // A config built in code gets the same answer from startAgent.
    const on = await parseConfig(
      renderConfigXml({ mode: 'none', address: '127.0.0.1', port: 0 }),
      join(dir, 'on.config'),
    );
    const off = { ...on, listener: { ...on.listener, enabled: false } };
    await assert.rejects(startAgent(off, silentLogger()), /^ConfigError: Listener\/@Enabled: is "false"/);
  });

  it('close() stops accepting and closes established connections', async () => {
    const agent = await startAgent(config, silentLogger());
    const client = await connect(agent);
    await client.ping();
    assert.equal(agent.connectionCount, 1);
    await agent.close();
    await client.closed;
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none', timeoutMs: 2000 }),
      /ECONNREFUSED/,
    );
  });
});
