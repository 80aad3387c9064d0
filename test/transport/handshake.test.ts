/**
 * Client and agent handshakes (connectToAgent / acceptHandshake) in-process
 * over real TCP and TLS on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createSecureContext, type SecureContext } from 'node:tls';
import {
  type ClientHello,
  decodeAgentMessage,
  decodeClientMessage,
  encodeAgentMessage,
  encodeClientMessage,
  formatVersion,
  parseVersion,
  ReplayCache,
} from '../../src/protocol/index.js';
import {
  acceptHandshake,
  connectToAgent,
  type EncryptionMode,
  type FramedConnection,
  HandshakeError,
  type ServerHandshakeResult,
} from '../../src/transport/index.js';
import { makeTestCertificate, type TestCertificate, tempDir } from '../helpers/agent.js';

interface TestAgent {
  port: number;
  hellos: ClientHello[];
  results: ServerHandshakeResult[];
  failures: Error[];
  close(): Promise<void>;
}

const AGENT_VERSION = parseVersion('3.1.4.1');

/** A one-mode agent: handshake, then echo every message's command and data back. */
async function startEchoAgent(options: {
  mode: EncryptionMode;
  key?: Buffer;
  secureContext?: SecureContext;
  grant?: (hello: ClientHello) => number;
  timeoutMs?: number;
}): Promise<TestAgent> {
  const hellos: ClientHello[] = [];
  const results: ServerHandshakeResult[] = [];
  const failures: Error[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    acceptHandshake(socket, {
      mode: options.mode,
      key: options.key,
      secureContext: options.secureContext,
      maxMessageSize: 1 << 20,
      agentVersion: AGENT_VERSION,
      replay: new ReplayCache(1000),
      timeoutMs: options.timeoutMs ?? 5000,
      grantSession: (hello) => {
        hellos.push(hello);
        return options.grant ? options.grant(hello) : hello.sessionId || 4242;
      },
    }).then(
      (r) => {
        results.push(r);
        r.connection.on('message', (m) => {
          const { command, data } = decodeClientMessage(m);
          r.connection.send(encodeAgentMessage(command, Buffer.from(data)));
        });
      },
      (err: Error) => {
        failures.push(err);
        socket.destroy();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as import('node:net').AddressInfo).port,
    hellos,
    results,
    failures,
    close: async () => {
      for (const s of sockets) s.destroy();
      for (const r of results) r.connection.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Sends a client message carrying `text`; resolves with the data of the agent message that comes back. */
async function echo(c: FramedConnection, text: string): Promise<string> {
  const got = new Promise<string>((resolve) =>
    c.once('message', (m) => resolve(decodeAgentMessage(m).data.toString())),
  );
  c.send(encodeClientMessage(0, 3, Buffer.from(text)));
  return got;
}

let dir: string;
let cert: TestCertificate;
let ctx: SecureContext;
before(async () => {
  dir = await tempDir();
  cert = await makeTestCertificate(dir);
  ctx = createSecureContext({ cert: cert.certPem, key: await readFile(cert.keyFile), minVersion: 'TLSv1.2' });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('handshake', () => {
  it('mode none: hello, reply, frames', async () => {
    const agent = await startEchoAgent({ mode: 'none' });
    try {
      const c = await connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none', sessionId: 77 });
      assert.equal(c.sessionId, 77);
      assert.equal(c.mode, 'none');
      assert.equal(formatVersion(c.version), '3.1.4.1', 'the packed agent version');
      assert.equal(agent.hellos[0]?.sessionId, 77);
      assert.equal(await echo(c.connection, 'hi'), 'hi');
      assert.equal(c.connection.socket.readyState, 'open');
      c.connection.destroy();
    } finally {
      await agent.close();
    }
  });

  it('mode aes: both IV chains start at the handshake IV', async () => {
    const key = randomBytes(24);
    const agent = await startEchoAgent({ mode: 'aes', key });
    try {
      const c = await connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'aes', key });
      assert.equal(c.mode, 'aes');
      for (let i = 0; i < 5; i++) assert.equal(await echo(c.connection, `m${i}`), `m${i}`);
      c.connection.destroy();
    } finally {
      await agent.close();
    }
  });

  it('mode ssl: TLS over the same socket, verified by thumbprint or by CA', async () => {
    const agent = await startEchoAgent({ mode: 'ssl', secureContext: ctx });
    try {
      const byPin = await connectToAgent({
        host: '127.0.0.1',
        port: agent.port,
        mode: 'ssl',
        thumbprint: cert.thumbprint,
      });
      assert.equal(await echo(byPin.connection, 'pinned'), 'pinned');
      byPin.connection.destroy();
      const byCa = await connectToAgent({
        host: '127.0.0.1',
        port: agent.port,
        mode: 'ssl',
        ca: cert.certPem,
      });
      assert.equal(await echo(byCa.connection, 'ca'), 'ca');
      byCa.connection.destroy();
      await assert.rejects(
        connectToAgent({
          host: '127.0.0.1',
          port: agent.port,
          mode: 'ssl',
          ca: cert.certPem,
          servername: 'other.example',
        }),
        /TLS with the agent .* failed/,
      );
    } finally {
      await agent.close();
    }
  });

  it('a mode mismatch names both modes', async () => {
    const agent = await startEchoAgent({ mode: 'aes', key: randomBytes(32) });
    try {
      await assert.rejects(
        connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none' }),
        (err: Error) => {
          assert.ok(err instanceof HandshakeError);
          assert.equal(err.code, 'MODE_MISMATCH');
          assert.match(err.message, /uses encryption mode "aes" but this client asked for "none"/);
          return true;
        },
      );
    } finally {
      await agent.close();
    }
  });

  it('validates client options before connecting', async () => {
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port: 1, mode: 'aes' }),
      /needs the agent's key/,
    );
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port: 1, mode: 'aes', key: randomBytes(10) }),
      /16, 24 or 32 bytes/,
    );
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port: 1, mode: 'ssl', thumbprint: 'abc' }),
      /64 hex digits/,
    );
    await assert.rejects(connectToAgent({ host: '127.0.0.1', port: 1, mode: 'ssl' }), /"ca".*"thumbprint"/s);
  });

  it('a refused grant closes the connection with nothing written', async () => {
    const agent = await startEchoAgent({
      mode: 'none',
      grant: () => {
        throw new Error('no');
      },
    });
    try {
      await assert.rejects(
        connectToAgent({ host: '127.0.0.1', port: agent.port, mode: 'none' }),
        (err: Error) => {
          assert.ok(err instanceof HandshakeError && err.code === 'REFUSED', String(err));
          return true;
        },
      );
    } finally {
      await agent.close();
    }
  });

  it('times out when the agent never answers, and honours an abort signal', async () => {
    const held = new Set<Socket>();
    // Accepts and never reads (paused sockets would not even notice the client leaving).
    const silent = createServer({ pauseOnConnect: true }, (s) => held.add(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as import('node:net').AddressInfo).port;
    try {
      const t0 = performance.now();
      await assert.rejects(
        connectToAgent({ host: '127.0.0.1', port, mode: 'none', timeoutMs: 200 }),
        /sent no handshake reply within 200 ms, so it is probably not an Inedo agent/,
      );
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 150, `gave up after ${elapsed} ms, before its timeout`);
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('stop now')), 50);
      await assert.rejects(
        connectToAgent({ host: '127.0.0.1', port, mode: 'none', signal: ac.signal }),
        /stop now/,
      );
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it('the agent side gives up when its signal aborts', async () => {
    const agent = await startEchoAgent({ mode: 'none', timeoutMs: 100 });
    try {
      const { connect } = await import('node:net');
      const s = connect({ host: '127.0.0.1', port: agent.port });
      s.on('error', () => {});
      await new Promise<void>((r) => s.once('close', () => r()));
      assert.equal(agent.failures.length, 1);
      assert.match(String(agent.failures[0]), /no complete handshake within 100 ms/);
      assert.equal(agent.results.length, 0);
    } finally {
      await agent.close();
    }
  });

  it('reports a connection refused clearly', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as import('node:net').AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await assert.rejects(
      connectToAgent({ host: '127.0.0.1', port, mode: 'none' }),
      /cannot connect to the agent at 127\.0\.0\.1:\d+: ECONNREFUSED/,
    );
  });
});
