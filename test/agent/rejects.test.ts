/**
 * Everything the agent must refuse — wrong GUID or version, garbage,
 * oversize or undecryptable frames, a wrong AES key, stalled handshakes —
 * against real `outpost serve` processes, checking each time that the agent
 * is still serving afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  AES_IV_SIZE,
  AesFrameEncoder,
  AGENT_REPLY_SIZE,
  AgentType,
  decodeAgentReply,
  encodeClientHello,
  encodeRequest,
  frameHeader,
  Mode,
  PROTOCOL_MAJOR,
  packVersion,
} from '../../src/protocol/index.js';
import { type AgentProcess, rawExchange, startAgentProcess, TestClient } from '../helpers/agent.js';

const HANDSHAKE_TIMEOUT_S = 0.5;

async function assertServing(agent: AgentProcess): Promise<void> {
  const c = await agent.connect();
  const client = new TestClient(c.connection);
  const r = await client.request(AgentType.Meta, 'Ping', {});
  assert.equal(r.kind, 'response', 'the agent still answers a good client');
  client.close();
}

function badGuidHello(): Buffer {
  const h = encodeClientHello();
  h[0] = (h[0]! + 1) & 0xff;
  return h;
}

function helloWithVersion(version: number): Buffer {
  const h = encodeClientHello();
  h.writeInt32LE(version, 16);
  return h;
}

/** A valid hello changed by `edit`. */
function patched(edit: (hello: Buffer) => void): Buffer {
  const h = encodeClientHello();
  edit(h);
  return h;
}

/** Handshake refusals common to every mode: the connection is closed with nothing written. */
function handshakeRefusals(getAgent: () => AgentProcess) {
  const cases: [string, Buffer[]][] = [
    ['a wrong GUID', [badGuidHello()]],
    ['a wrong GUID in the last byte', [patched((h) => h.writeUInt8(h[15]! ^ 1, 15))]],
    ['an unsupported major version', [helloWithVersion(packVersion(PROTOCOL_MAJOR + 1, 0))]],
    ['a negative version', [helloWithVersion(-1)]],
    ['a negative session ID', [patched((h) => h.writeInt32LE(-5, 20))]],
    ['garbage (an HTTP request)', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
    ['random bytes', [randomBytes(64)]],
  ];
  for (const [what, chunks] of cases) {
    it(`closes on ${what} without writing a byte`, async () => {
      const agent = getAgent();
      const r = await rawExchange(agent.host, agent.port, chunks, { waitMs: 3000 });
      assert.equal(r.closed, true, 'the agent closed the connection');
      assert.equal(r.received.length, 0, 'nothing was written');
      assert.ok(
        r.elapsedMs < HANDSHAKE_TIMEOUT_S * 1000,
        `refused at once, not by the timeout (${r.elapsedMs} ms)`,
      );
      await assertServing(agent);
    });
  }
}

describe('rejects in mode none', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({
      mode: 'none',
      handshakeTimeout: HANDSHAKE_TIMEOUT_S,
      maxMessageSize: 65536,
    });
  });
  after(() => agent?.stop());

  handshakeRefusals(() => agent);

  it('closes a connection that announces a frame larger than MaxMessageSize', async () => {
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), frameHeader(65537)]);
    assert.equal(r.closed, true);
    assert.equal(r.received.length, AGENT_REPLY_SIZE, 'only the handshake reply was sent');
    assert.equal(decodeAgentReply(r.received).mode, Mode.None);
    await assertServing(agent);
  });

  it('closes on a frame length of 0x7fffffff, 0 or negative', async () => {
    for (const len of [0x7fffffff, 0, -1]) {
      const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), frameHeader(len)]);
      assert.equal(r.closed, true, `length ${len}`);
    }
    await assertServing(agent);
  });

  it('answers frames pipelined right behind the hello', async () => {
    const ping = encodeRequest(AgentType.Meta, 9, 'Ping', {});
    const frame = Buffer.concat([frameHeader(ping.length), ping]);
    const r = await rawExchange(agent.host, agent.port, [Buffer.concat([encodeClientHello(), frame])], {
      waitMs: 2000,
      onData: (got, socket) => {
        if (got.length >= AGENT_REPLY_SIZE + 4 + 6) socket.end();
      },
    });
    assert.ok(r.received.length >= AGENT_REPLY_SIZE + 4 + 6, 'the ping was answered');
    assert.equal(r.received.readInt32LE(AGENT_REPLY_SIZE + 4 + 1), 9, 'token 9 echoed');
  });

  it('closes a connection that sends nothing after HandshakeTimeout', async () => {
    const r = await rawExchange(agent.host, agent.port, [], { waitMs: 5000 });
    assert.equal(r.closed, true);
    assert.equal(r.received.length, 0);
    assert.ok(r.elapsedMs >= HANDSHAKE_TIMEOUT_S * 1000 - 50, `not before the timeout (${r.elapsedMs} ms)`);
    assert.ok(r.elapsedMs < HANDSHAKE_TIMEOUT_S * 1000 + 2000, `soon after the timeout (${r.elapsedMs} ms)`);
  });

  it('closes a connection that stalls halfway through the hello after HandshakeTimeout', async () => {
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello().subarray(0, 10)], {
      waitMs: 5000,
    });
    assert.equal(r.closed, true);
    assert.equal(r.received.length, 0);
    assert.ok(r.elapsedMs >= HANDSHAKE_TIMEOUT_S * 1000 - 50);
    await assertServing(agent);
  });

  it('logs handshake failures with the remote address', async () => {
    const rec = await agent.waitForLog((l) => l.msg === 'handshake failed', 5000);
    assert.equal(rec.remote, '127.0.0.1');
    assert.equal(typeof rec.reason, 'string');
  });
});

describe('rejects in mode aes', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'aes', handshakeTimeout: HANDSHAKE_TIMEOUT_S });
  });
  after(() => agent?.stop());

  handshakeRefusals(() => agent);

  it('closes the connection of a client with the wrong key and logs a protocol error, not the key', async () => {
    const wrong = randomBytes(32);
    const c = await agent.connect({ key: wrong });
    const client = new TestClient(c.connection);
    // Several frames at once: one could decrypt to valid padding by chance (~1/256), not all of them.
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => client.request(AgentType.Meta, 'Ping', {}, 3000)),
    );
    assert.ok(
      results.every((r) => r.status === 'rejected'),
      'no request is answered',
    );
    await client.closed;
    const rec = await agent.waitForLog(
      (l) => l.msg?.startsWith('protocol error') === true && l.code === 'DECRYPT_FAILED',
    );
    assert.match(String(rec.msg), /AES key/);
    const keyHex = agent.key!.toString('hex');
    assert.ok(!agent.stdout().includes(keyHex), 'the agent never logs its key');
    assert.ok(!agent.stdout().includes(wrong.toString('hex')));
    await assertServing(agent);
  });

  it('closes on an undecryptable frame (right key, corrupted ciphertext)', async () => {
    const iv = { value: null as Buffer | null };
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello()], {
      onData: (got, socket) => {
        if (iv.value || got.length < AGENT_REPLY_SIZE + AES_IV_SIZE) return;
        iv.value = got.subarray(AGENT_REPLY_SIZE, AGENT_REPLY_SIZE + AES_IV_SIZE);
        const frame = new AesFrameEncoder(agent.key!, iv.value).encode(
          encodeRequest(AgentType.Meta, 1, 'Ping', {}),
        );
        frame[frame.length - 1]! ^= 0x55; // breaks the padding of the last block
        socket.write(frame);
      },
    });
    assert.ok(iv.value, 'the handshake completed');
    assert.equal(r.closed, true);
    assert.equal(r.received.length, AGENT_REPLY_SIZE + AES_IV_SIZE, 'no reply to the corrupted frame');
    await assertServing(agent);
  });

  it('closes on a frame whose length is not a whole number of AES blocks', async () => {
    const r = await rawExchange(agent.host, agent.port, [
      encodeClientHello(),
      frameHeader(33),
      randomBytes(33),
    ]);
    assert.equal(r.closed, true);
    assert.equal(r.received.length, AGENT_REPLY_SIZE + AES_IV_SIZE);
    await assertServing(agent);
  });

  it('closes on an oversize frame length before reading its body', async () => {
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), frameHeader(0x7ffffff0)]);
    assert.equal(r.closed, true);
    await assertServing(agent);
  });
});
