/**
 * Outbound mode (PROTOCOL.md §8) end to end, in process: real agents
 * (startAgent with the host router: real host processes) dial a real
 * `AgentListener` over real TLS on 127.0.0.1, certificates made in the test.
 * Backoff is shortened (base 20 ms, cap 200 ms) so redials are quick; the
 * schedule itself is unit-tested in backoffDelay.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { HostRouter } from '../../src/agent/host-router.js';
import { type AgentHandle, backoffDelay, type Logger, startAgent } from '../../src/agent/index.js';
import { AgentClient, AgentListener } from '../../src/index.js';
import { encodeOutboundHello } from '../../src/protocol/index.js';
import { makeTestCertificate, type TestCertificate, tempDir } from '../helpers/agent.js';
import { until } from './e2e-helpers.js';

const HOST = '127.0.0.1';
const FAST = { backoff: { baseMs: 20, maxMs: 200 } };
let dir: string;
let hubCert: TestCertificate;
let otherCert: TestCertificate;
let listener: AgentListener;
const keys = new Map<string, string>([
  ['key-web01', 'web01'],
  ['key-both', 'both'],
  ['key-pool', 'pool'],
]);

/** A logger whose lines the test can read. */
function recordingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

interface Started {
  agent: AgentHandle;
  lines: Record<string, unknown>[];
}

async function outboundAgent(
  name: string,
  server: { key: string; thumbprint?: string; port?: number; maxConnections?: number },
  extra: { listen?: boolean; router?: boolean } = {},
): Promise<Started> {
  const root = join(dir, name);
  const xml = renderConfigXml({
    mode: 'none',
    address: HOST,
    port: 0,
    listenerEnabled: extra.listen ?? false,
    allowedRoots: [root],
    rootPaths: { BuildMaster: join(root, 'bm') },
    servers: [
      {
        host: `${HOST}:${server.port ?? listener.address.port}`,
        key: server.key,
        ...(server.thumbprint !== undefined ? { thumbprint: server.thumbprint } : {}),
        ...(server.maxConnections !== undefined ? { maxConnections: server.maxConnections } : {}),
      },
    ],
  });
  const config = await parseConfig(xml, join(dir, `${name}.config`));
  const { logger, lines } = recordingLogger();
  const agent = await startAgent(config, logger, {
    outbound: FAST,
    ...(extra.router === false ? {} : { router: new HostRouter({ config, logger, spareHosts: 0 }) }),
  });
  return { agent, lines };
}

const messages = (lines: Record<string, unknown>[]) => lines.map((l) => String(l.msg));

before(async () => {
  dir = await tempDir('outpost-outbound-');
  hubCert = await makeTestCertificate(dir, 'hub');
  otherCert = await makeTestCertificate(dir, 'other');
  listener = await AgentListener.listen({
    cert: hubCert.certPem,
    key: await (await import('node:fs/promises')).readFile(hubCert.keyFile),
    host: HOST,
    port: 0,
    agents: keys,
  });
});
after(async () => {
  await listener.close();
  await rm(dir, { recursive: true, force: true });
});

describe('outbound mode', () => {
  it('backoff: full jitter between 0 and min(cap, base·2^(n-1))', () => {
    const p = { baseMs: 1000, maxMs: 60_000 };
    assert.equal(
      backoffDelay(0, p, () => 0.99),
      0,
    );
    assert.equal(
      backoffDelay(1, p, () => 0.999),
      999,
    );
    assert.equal(
      backoffDelay(3, p, () => 0.5),
      2000,
    );
    assert.equal(
      backoffDelay(20, p, () => 0.5),
      30_000,
    );
    assert.equal(
      backoffDelay(20, p, () => 0),
      0,
    );
  });

  it('dials the listener, is driven like a dialed agent, and keeps one idle link', async () => {
    const { agent } = await outboundAgent('web01', { key: 'key-web01', thumbprint: hubCert.thumbprint });
    try {
      const arrived = await listener.waitFor('web01', { timeoutMs: 10_000 });
      assert.equal(arrived.address, HOST);
      const client = await listener.connect('web01');
      const r = await client.exec('/bin/sh', ['-c', 'echo outbound; exit 3'], { encoding: 'utf8' });
      assert.equal(r.stdout, 'outbound\n');
      assert.equal(r.code, 3);
      assert.equal(client.agentInfo.product, 'Outpost');
      // The agent dialed its next link as soon as this one was taken.
      await until(() => (listener.agent('web01')?.idle ?? 0) >= 1, 10_000, 'a new idle link');
      assert.equal(listener.agent('web01')?.version, client.agentVersion);
      const status = agent.outboundStatus()[0]!;
      assert.equal(status.failures, 0);
      assert.ok(status.used >= 1);
      await client.close();
    } finally {
      await agent.close();
    }
    await until(() => listener.agent('web01') === undefined, 10_000, 'web01 to leave');
  });

  it('a key the listener does not know: closed with nothing written, one log line naming the key setting', async () => {
    const { agent, lines } = await outboundAgent('stranger', {
      key: 'not-a-known-key',
      thumbprint: hubCert.thumbprint,
    });
    try {
      await until(
        () => messages(lines).some((m) => m.includes("does not know this agent's key")),
        10_000,
        'refusal log',
      );
      const line = lines.find((l) => String(l.msg).includes("does not know this agent's key"))!;
      assert.match(String(line.msg), /Connections\/Server\/@Key/);
      assert.equal(line.server, `${HOST}:${listener.address.port}`);
      assert.ok(!JSON.stringify(lines).includes('not-a-known-key'), 'the key is never logged');
    } finally {
      await agent.close();
    }
    // A raw peer sees the same: the preface, then a close with zero bytes.
    const got = await new Promise<number>((resolve) => {
      const s = tlsConnect({ host: HOST, port: listener.address.port, rejectUnauthorized: false }, () =>
        s.write(encodeOutboundHello('nope')),
      );
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
      });
      s.on('error', () => {});
      s.on('close', () => resolve(n));
    });
    assert.equal(got, 0);
  });

  it('thumbprint mismatch: refused before the key is sent, the log has both thumbprints', async () => {
    const { agent, lines } = await outboundAgent('pinned', {
      key: 'key-web01',
      thumbprint: otherCert.thumbprint,
    });
    try {
      await until(
        () => messages(lines).some((m) => m.includes('thumbprint mismatch')),
        10_000,
        'mismatch log',
      );
      const m = messages(lines).find((x) => x.includes('thumbprint mismatch'))!;
      assert.ok(m.includes(hubCert.thumbprint), 'presented');
      assert.ok(m.includes(otherCert.thumbprint), 'expected');
      assert.equal(listener.agent('web01'), undefined, 'never arrived');
    } finally {
      await agent.close();
    }
  });

  it('no thumbprint and an untrusted certificate: refused (no fallback), the log says to pin it', async () => {
    const { agent, lines } = await outboundAgent('trust', { key: 'key-web01' });
    try {
      await until(() => messages(lines).some((m) => m.includes('not trusted')), 10_000, 'trust log');
      assert.match(messages(lines).find((x) => x.includes('not trusted'))!, /Thumbprint/);
      assert.equal(listener.agent('web01'), undefined);
    } finally {
      await agent.close();
    }
  });

  it('a pool of links serves parallel sessions, up to MaxConnections', async () => {
    const { agent } = await outboundAgent(
      'pool',
      { key: 'key-pool', thumbprint: hubCert.thumbprint, maxConnections: 3 },
      { router: false },
    );
    try {
      await listener.waitFor('pool', { timeoutMs: 10_000 });
      const clients = await Promise.all([0, 1, 2].map(() => listener.connect('pool', { waitMs: 10_000 })));
      assert.equal(new Set(clients.map((c) => c.sessionId)).size, 3, 'three sessions');
      // Requests on all three at once (meta requests: no host process needed to show the links are separate).
      const infos = await Promise.all(clients.map((c) => c.info()));
      assert.deepEqual(
        infos.map((i) => i.encryptionMode),
        [0, 0, 0],
        'mode 0 inside TLS',
      );
      // All three in use: no fourth link (MaxConnections = 3).
      assert.equal(agent.outboundStatus()[0]!.used, 3);
      assert.equal(agent.outboundStatus()[0]!.waiting, 0);
      await assert.rejects(listener.connect('pool', { waitMs: 300 }), /no idle link/);
      await clients[0]!.close();
      // One freed: the agent dials a waiting link again.
      await until(() => (listener.agent('pool')?.idle ?? 0) === 1, 10_000, 'a link after one closed');
      await Promise.all(clients.slice(1).map((c) => c.close()));
    } finally {
      await agent.close();
    }
  });

  it("a running process keeps streaming across a dropped link (resume on the agent's next link)", async () => {
    const { agent } = await outboundAgent('web01b', { key: 'key-web01', thumbprint: hubCert.thumbprint });
    try {
      await listener.waitFor('web01', { timeoutMs: 10_000 });
      const client = await listener.connect('web01', { reconnect: { retries: 20, delayMs: 50 } });
      const session = client.sessionId;
      const proc = await client.spawn('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6; do echo $i; sleep 0.1; done']);
      let out = '';
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d: string) => {
        out += d;
      });
      await until(() => out.includes('1'), 10_000, 'first line');
      // Drop the link under the client: the agent dials again, the client resumes there.
      const conn = (client as unknown as { channel: { conn: { socket: { destroy(): void } } } }).channel.conn;
      conn.socket.destroy();
      const { code } = await proc.exited;
      assert.equal(code, 0);
      assert.equal(out, '1\n2\n3\n4\n5\n6\n');
      assert.equal(client.sessionId, session, 'same session');
      await client.close();
    } finally {
      await agent.close();
    }
  });

  it('an agent both listening and outbound serves both ways, one session registry', async () => {
    const { agent } = await outboundAgent(
      'both',
      { key: 'key-both', thumbprint: hubCert.thumbprint },
      { listen: true, router: false },
    );
    try {
      assert.ok(agent.port > 0);
      await listener.waitFor('both', { timeoutMs: 10_000 });
      const viaLink = await listener.connect('both');
      const direct = await AgentClient.connect({ host: HOST, port: agent.port, mode: 'none' });
      assert.ok((await viaLink.ping()) >= 0);
      assert.ok((await direct.ping()) >= 0);
      assert.equal(agent.sessions.size, 2);
      // The outbound session belongs to the server's key, not to 127.0.0.1: a direct client cannot take it.
      const stolen = await AgentClient.connect({
        host: HOST,
        port: agent.port,
        mode: 'none',
        sessionId: viaLink.sessionId,
      }).then(
        (c) => c,
        (e: unknown) => e,
      );
      assert.ok(stolen instanceof Error, 'refused');
      await viaLink.close();
      await direct.close();
    } finally {
      await agent.close();
    }
  });

  it('redials after the server closes, and backs off while the server is down, then comes back', async () => {
    const second = await AgentListener.listen({
      cert: hubCert.certPem,
      key: await (await import('node:fs/promises')).readFile(hubCert.keyFile),
      host: HOST,
      port: 0,
      agents: keys,
    });
    const port = second.address.port;
    const { agent, lines } = await outboundAgent(
      'restart',
      { key: 'key-web01', thumbprint: hubCert.thumbprint, port },
      { router: false },
    );
    try {
      await second.waitFor('web01', { timeoutMs: 10_000 });
      await second.close(); // the "hub" goes away: links closed, port closed
      await until(() => agent.outboundStatus()[0]!.failures >= 3, 10_000, 'failures while down');
      assert.ok(
        messages(lines).some((m) => /unreachable: connection refused/.test(m)),
        'unreachable logged',
      );
      const restarted = await AgentListener.listen({
        cert: hubCert.certPem,
        key: await (await import('node:fs/promises')).readFile(hubCert.keyFile),
        host: HOST,
        port,
        agents: keys,
      });
      try {
        await restarted.waitFor('web01', { timeoutMs: 10_000 });
        const c = await restarted.connect('web01');
        assert.ok((await c.ping()) >= 0);
        await c.close({ keepSession: true });
        await until(() => agent.outboundStatus()[0]!.failures === 0, 5000, 'failures reset');
      } finally {
        await restarted.close();
      }
    } finally {
      await agent.close();
    }
  });

  it('an idle link is replaced before it is closed (make-before-break): a dead path cannot hide', async () => {
    // A bare TLS server that only counts TCP connections: the agent must never have none.
    const { createServer } = await import('node:tls');
    const { readFile } = await import('node:fs/promises');
    const server = createServer({ cert: hubCert.certPem, key: await readFile(hubCert.keyFile) });
    server.on('tlsClientError', () => {});
    let open = 0;
    let accepted = 0;
    let lowest = Number.POSITIVE_INFINITY;
    server.on('connection', (sock) => {
      open++;
      accepted++;
      sock.on('error', () => {});
      sock.once('close', () => {
        open--;
        lowest = Math.min(lowest, open);
      });
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    const port = (server.address() as { port: number }).port;
    const config = await parseConfig(
      renderConfigXml({
        mode: 'none',
        listenerEnabled: false,
        servers: [{ host: `${HOST}:${port}`, key: 'k', thumbprint: hubCert.thumbprint }],
      }),
      join(dir, 'rotate.config'),
    );
    const agent = await startAgent(config, recordingLogger().logger, {
      outbound: { ...FAST, idleLifetimeMs: 200 },
    });
    try {
      await until(() => accepted >= 4, 20_000, 'idle links replaced');
      assert.ok(lowest >= 1, `the agent had no link for a moment (lowest ${lowest})`);
      assert.equal(agent.outboundStatus()[0]!.failures, 0, 'retiring is not a failure');
    } finally {
      await agent.close();
      server.close();
    }
  });

  it('the listener bounds what an unknown peer can make it hold', async () => {
    // Plain TCP that never starts TLS, and TLS with a preface whose key length is too long.
    const raw = tcpConnect({ host: HOST, port: listener.address.port });
    raw.on('error', () => {});
    const huge = await new Promise<number>((resolve) => {
      const s = tlsConnect({ host: HOST, port: listener.address.port, rejectUnauthorized: false }, () => {
        const h = encodeOutboundHello('x');
        // Replace the 1-byte length with a 3-byte varint of 2,000,000.
        s.write(Buffer.concat([h.subarray(0, 20), Buffer.from([0x80, 0x89, 0x7a])]));
      });
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
      });
      s.on('error', () => {});
      s.on('close', () => resolve(n));
    });
    assert.equal(huge, 0, 'closed, nothing written');
    raw.destroy();
  });
});
