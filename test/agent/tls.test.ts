/**
 * Mode ssl against a real `outpost serve` process, with a certificate made in
 * the test in-process (src/transport/certs.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import {
  AGENT_REPLY_SIZE,
  AgentType,
  decodeAgentReply,
  encodeClientHello,
  encodeMetaRequest,
  encodePlainFrame,
  Mode,
} from '../../src/protocol/index.js';
import { type AgentProcess, rawExchange, startAgentProcess, TestClient } from '../helpers/agent.js';

describe('mode ssl', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'ssl', handshakeTimeout: 2 });
  });
  after(() => agent?.stop());

  it('serves a client that pins the thumbprint', async () => {
    const c = await agent.connect({
      thumbprint: agent.certificate!.thumbprint.toLowerCase().replace(/:/g, ''),
    });
    assert.equal(c.mode, 'ssl');
    const client = new TestClient(c.connection);
    const info = await client.call(AgentType.Meta, 'GetAgentInfo', {});
    assert.equal(info.encryptionMode, 1);
    const tls = c.connection.socket as import('node:tls').TLSSocket;
    assert.ok(['TLSv1.2', 'TLSv1.3'].includes(String(tls.getProtocol())));
    client.close();
  });

  it('serves a client that verifies by CA (the self-signed certificate itself)', async () => {
    const c = await agent.connect({ thumbprint: undefined, ca: agent.certificate!.certPem });
    const client = new TestClient(c.connection);
    await client.ping();
    client.close();
  });

  it('resumes a session from the same address (the session exists from the first valid frame)', async () => {
    const first = await agent.connect();
    const t = new TestClient(first.connection);
    await t.ping();
    t.close();
    const again = await agent.connect({ sessionId: first.sessionId });
    assert.equal(again.sessionId, first.sessionId);
    again.connection.close();
  });

  it('reports a pinned-thumbprint mismatch with both thumbprints', async () => {
    const wrong = 'AB'.repeat(32);
    await assert.rejects(agent.connect({ thumbprint: wrong }), (err: Error) => {
      assert.match(err.message, /AB:AB:AB/);
      assert.ok(err.message.includes(agent.certificate!.thumbprint), err.message);
      return true;
    });
  });

  it('refuses to connect without ca, thumbprint or insecure', async () => {
    await assert.rejects(agent.connect({ thumbprint: undefined }), /ca.*thumbprint/s);
    const c = await agent.connect({ thumbprint: undefined, insecure: true });
    c.connection.close();
  });

  it('rejects a client asking for mode aes, naming both modes', async () => {
    await assert.rejects(agent.connect({ mode: 'aes', key: Buffer.alloc(32, 1) }), (err: Error) => {
      assert.match(err.message, /"ssl"/);
      assert.match(err.message, /"aes"/);
      return true;
    });
  });

  it('closes a client that sends plaintext frames instead of TLS, and keeps serving', async () => {
    const ping = encodeMetaRequest('Ping', { token: 1 });
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), encodePlainFrame(ping, 5)], {
      waitMs: 4000,
    });
    assert.equal(r.closed, true);
    assert.ok(r.received.length >= AGENT_REPLY_SIZE);
    assert.equal(decodeAgentReply(r.received.subarray(0, AGENT_REPLY_SIZE)).mode, Mode.Tls);
    // Nothing but the handshake reply and possibly a TLS alert (record type 21) follows.
    if (r.received.length > AGENT_REPLY_SIZE) assert.equal(r.received[AGENT_REPLY_SIZE], 21);
    const c = await agent.connect();
    await new TestClient(c.connection).ping();
    c.connection.close();
  });

  it('refuses TLS 1.1', async () => {
    const r = await new Promise<string>((resolve) => {
      void rawExchange(agent.host, agent.port, [encodeClientHello()], {
        waitMs: 4000,
        onData: (got, socket) => {
          if (got.length !== AGENT_REPLY_SIZE) return;
          socket.removeAllListeners('data');
          const t = tlsConnect({
            socket,
            rejectUnauthorized: false,
            minVersion: 'TLSv1',
            maxVersion: 'TLSv1.1',
          });
          t.on('secureConnect', () => {
            resolve('connected');
            t.destroy();
          });
          t.on('error', (e) => resolve(`error: ${e.message}`));
        },
      });
    });
    // The agent answers with a protocol_version alert (the client could do TLS 1.1).
    assert.match(r, /^error: .*alert protocol version/, r);
  });
});
