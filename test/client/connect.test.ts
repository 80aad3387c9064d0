/**
 * AgentClient.connect and the meta commands against real agent processes in
 * the three modes: verification, clear errors for every misconfiguration,
 * session resume, update, closeSession and many requests in flight.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AbortError,
  AgentClient,
  ConnectionError,
  HandshakeError,
  isRemoteError,
  OutpostError,
  RemoteError,
  TimeoutError,
} from '../../src/index.js';
import { type ClientAgent, internals, startClientAgent } from './helpers.js';

describe('AgentClient in mode aes', () => {
  let env: ClientAgent;
  before(async () => {
    env = await startClientAgent({ mode: 'aes', extensionCachePath: 'ext-cache' });
  });
  after(() => env.stop());

  it('connects with a hex key, pings and reports the agent', async () => {
    const client = await env.connect({ key: env.agent.key!.toString('hex') });
    try {
      assert.ok(client.sessionId > 0);
      assert.equal(client.connected, true);
      const ms = await client.ping();
      assert.ok(typeof ms === 'number' && ms >= 0, `ping reported ${ms}`);
      const info = await client.info();
      assert.equal(info.protocolVersion, 1000);
      assert.equal(info.product, 'Outpost');
      assert.equal(info.platform, process.platform);
      assert.deepEqual([...info.supportedAgentTypes], [0, 1, 2, 3]);
      assert.equal(info.encryptionMode, 2, 'aes');
      assert.match(client.agentVersion, /^\d+\.\d+\.\d+\.\d+$/);
      assert.equal(client.pathSeparator, '/');
      assert.deepEqual({ ...client.agentInfo, uptimeMs: 0 }, { ...info, uptimeMs: 0 });
      assert.equal(await client.rootPath(), join(env.root, 'bm'));
      assert.equal(await client.rootPath('Otter'), join(env.root, 'otter'));
      assert.equal(await client.dirExists(join(env.root, 'bm')), true, 'root path created on demand');
    } finally {
      await client.close();
    }
    assert.equal(client.connected, false);
    await assert.rejects(client.ping(), (e: unknown) => e instanceof ConnectionError && e.code === 'CLOSED');
  });

  it('sends file and process requests to the chosen product type', async () => {
    const client = await env.connect({ agentType: 'Otter' });
    try {
      assert.equal(client.agentType, 1);
      assert.equal(await client.rootPath(), join(env.root, 'otter'));
      const r = await client.exec('pwd', [], { encoding: 'utf8' });
      assert.equal(r.stdout.trim(), join(env.root, 'otter'), "processes start in the product's root path");
    } finally {
      await client.close();
    }
  });

  it('keeps many requests in flight on one connection: product ones by token, meta ones in order', async () => {
    const client = await env.connect();
    try {
      const bm = join(env.root, 'bm');
      await client.mkdir(bm);
      const calls = Array.from({ length: 300 }, (_, i) =>
        i % 3 === 0
          ? client.dirExists(i % 2 ? bm : join(bm, 'missing'))
          : i % 3 === 1
            ? client.ping()
            : client.rootPath(((Math.floor(i / 3) % 3) + 1) as 1 | 2 | 3),
      );
      const { pending, metaQueue } = internals(client).channel;
      assert.ok(pending.size >= 100, `${pending.size} product requests in flight`);
      assert.ok(metaQueue.length >= 200, `${metaQueue.length} meta requests in flight`);
      const results = await Promise.all(calls);
      for (let i = 0; i < results.length; i += 3) assert.equal(results[i], i % 2 === 1, `dirExists #${i}`);
      for (let i = 2; i < results.length; i += 3)
        assert.equal(
          results[i],
          join(env.root, ['otter', 'bm', 'hedgehog'][Math.floor(i / 3) % 3]!),
          `rootPath #${i}`,
        );
    } finally {
      await client.close();
    }
  });

  it('resumes a session after close({ keepSession }) and reports a lost one after closeSession()', async () => {
    const first = await env.connect();
    const id = first.sessionId;
    await first.close({ keepSession: true });
    const second = await env.connect({ sessionId: id });
    assert.equal(second.sessionId, id, 'same session granted');
    await second.closeSession();
    await assert.rejects(
      second.ping(),
      (e: unknown) => e instanceof ConnectionError && e.code === 'SESSION_CLOSED',
    );
    const third = await env.connect({ sessionId: id });
    try {
      assert.notEqual(third.sessionId, id, 'a closed session is not granted again');
    } finally {
      await third.close();
    }
  });

  it('update() stores binaries and extensions per client address and product, confirmed by a ping', async () => {
    const client = await env.connect();
    try {
      await client.update({
        binaries: [{ name: 'a.dll', data: Buffer.from([1, 2, 3]) }],
        extensions: [{ name: 'b.upack', data: 'text' }],
      });
      // The instance is the client's address (127.0.0.1), the product BuildMaster.
      const dir = join(env.agent.dir, 'ext-cache', '127.0.0.1', 'BuildMaster');
      assert.deepEqual([...(await readFile(join(dir, 'binaries', 'a.dll')))], [1, 2, 3]);
      assert.equal(await readFile(join(dir, 'extensions', 'b.upack'), 'utf8'), 'text');
      await assert.rejects(client.update({ binaries: [{ name: '../escape', data: 'x' }] }), TypeError);
      assert.ok((await client.ping()) >= 0, 'the meta FIFO is intact after a refused update');
    } finally {
      await client.close();
    }
  });

  it('refuses bad options with errors that say what to fix', async () => {
    const bad = (o: Record<string, unknown>) => env.connect(o as never);
    await assert.rejects(bad({ key: 'not-hex' }), { name: 'TypeError', message: /32, 48 or 64 hex digits/ });
    await assert.rejects(bad({ key: Buffer.alloc(7) }), { name: 'TypeError', message: /16, 24 or 32 bytes/ });
    await assert.rejects(bad({ agentType: 'Jenkins' }), {
      name: 'TypeError',
      message: /Otter.*BuildMaster.*Hedgehog/,
    });
    await assert.rejects(bad({ port: 0 }), { name: 'RangeError', message: /port/ });
    await assert.rejects(bad({ host: '' }), { name: 'TypeError', message: /host/ });
    await assert.rejects(bad({ sessionId: -4 }), { name: 'RangeError', message: /sessionId/ });
    await assert.rejects(bad({ reconnect: { retries: -1 } }), { name: 'RangeError', message: /retries/ });
  });

  it('names both modes when the client asks for another one', async () => {
    await assert.rejects(
      env.connect({ mode: 'none', key: undefined }),
      (e: unknown) =>
        e instanceof HandshakeError &&
        e.code === 'MODE_MISMATCH' &&
        /"aes"/.test(e.message) &&
        /"none"/.test(e.message),
    );
  });

  it('reports a wrong AES key as a rejected handshake', async () => {
    await assert.rejects(
      env.connect({ key: Buffer.alloc(32, 7) }),
      (e: unknown) => e instanceof HandshakeError && e.code === 'REJECTED' && /AES key/.test(e.message),
    );
  });

  it('honours AbortSignal and reports a refused port', async () => {
    await assert.rejects(
      env.connect({ signal: AbortSignal.abort() }),
      (e: unknown) => e instanceof AbortError,
    );
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    await assert.rejects(
      env.connect({ port }),
      (e: unknown) =>
        e instanceof HandshakeError && e.code === 'CONNECT_FAILED' && e.message.includes(String(port)),
    );
  });

  it('times out against a server that never answers', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      await assert.rejects(env.connect({ port, timeoutMs: 300 }), (e: unknown) => e instanceof TimeoutError);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('a per-call signal rejects that call only', async () => {
    const client = await env.connect();
    try {
      await assert.rejects(
        client.ping({ signal: AbortSignal.abort() }),
        (e: unknown) => e instanceof AbortError,
      );
      assert.ok((await client.ping()) >= 0);
    } finally {
      await client.close();
    }
  });
});

describe('AgentClient in mode ssl', () => {
  let env: ClientAgent;
  before(async () => {
    env = await startClientAgent({ mode: 'ssl' });
  });
  after(() => env.stop());

  it('verifies the agent by pinned thumbprint or by CA', async () => {
    const pinned = await env.connect();
    assert.ok((await pinned.ping()) >= 0);
    await pinned.close();
    const byCa = await env.connect({ thumbprint: undefined, ca: env.agent.certificate!.certPem });
    assert.ok((await byCa.ping()) >= 0);
    await byCa.close();
  });

  it('shows expected and presented thumbprints on a mismatch', async () => {
    const wrong = 'AB'.repeat(32);
    await assert.rejects(env.connect({ thumbprint: wrong }), (e: unknown) => {
      assert.ok(e instanceof HandshakeError);
      assert.equal(e.code, 'THUMBPRINT_MISMATCH');
      assert.ok(e.message.includes(env.agent.certificate!.thumbprint), e.message);
      assert.ok(e.message.includes('AB:AB:AB'), e.message);
      return true;
    });
  });

  it('infers mode ssl from a thumbprint and needs a way to verify', async () => {
    const client = await env.connect({ mode: undefined });
    await client.close();
    await assert.rejects(env.connect({ thumbprint: undefined }), /needs a way to verify/);
  });
});

describe('AgentClient in mode none', () => {
  let env: ClientAgent;
  before(async () => {
    env = await startClientAgent({ mode: 'none' });
  });
  after(() => env.stop());

  it('connects without encryption and reports wire errors with code and path', async () => {
    const client = await AgentClient.connect({ host: env.agent.host, port: env.agent.port });
    try {
      const missing = join(env.root, 'missing.txt');
      const err = await client.readFile(missing).catch((e: unknown) => e);
      assert.ok(err instanceof RemoteError && err instanceof OutpostError);
      assert.equal(err.code, 'NotFound');
      assert.equal(err.path, missing);
      assert.equal(err.command, 'ReadAllBytes');
      assert.equal(err.retryable, false);
      assert.match(err.message, /^NotFound: /);
      await assert.rejects(
        client.rmdir(env.root),
        (e: unknown) => isRemoteError(e, 'NotEmpty') || isRemoteError(e, 'AccessDenied'),
      );
    } finally {
      await client.close();
    }
  });
});
