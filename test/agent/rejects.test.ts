/**
 * Everything the agent must refuse — wrong GUID or version, garbage,
 * oversize or undecryptable frames, a wrong AES key, stalled handshakes —
 * against real `outpost serve` processes, checking each time that the agent
 * is still serving afterwards. Refusals are checked against agents with the
 * default 30 s HandshakeTimeout, so a close within the test's wait is the
 * refusal itself, not the timeout.
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
  encodeMetaRequest,
  frameHeader,
  Mode,
} from '../../src/protocol/index.js';
import { type AgentProcess, rawExchange, startAgentProcess, TestClient } from '../helpers/agent.js';

const HANDSHAKE_TIMEOUT_S = 0.5;

async function assertServing(agent: AgentProcess): Promise<void> {
  const c = await agent.connect();
  const client = new TestClient(c.connection);
  await client.ping();
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
    ['protocol version 1001', [helloWithVersion(1001)]],
    ['protocol version 65536 (the old wire)', [helloWithVersion(65536)]],
    ['a negative version', [helloWithVersion(-1)]],
    ['garbage (an HTTP request)', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
    ['random bytes', [randomBytes(64)]],
  ];
  for (const [what, chunks] of cases) {
    it(`closes on ${what} without writing a byte`, async () => {
      const agent = getAgent();
      const r = await rawExchange(agent.host, agent.port, chunks, { waitMs: 3000 });
      assert.equal(r.closed, true, 'the agent closed the connection');
      assert.equal(r.received.length, 0, 'nothing was written');
      await assertServing(agent);
    });
  }
}

describe('rejects in mode none', () => {
  let agent: AgentProcess;
  let quick: AgentProcess;
  before(async () => {
    [agent, quick] = await Promise.all([
      startAgentProcess({ mode: 'none', maxMessageSize: 65536 }),
      startAgentProcess({ mode: 'none', handshakeTimeout: HANDSHAKE_TIMEOUT_S }),
    ]);
  });
  after(() => Promise.all([agent?.stop(), quick?.stop()]));

  handshakeRefusals(() => agent);

  it('a negative session ID names no session: a fresh positive one is granted', async () => {
    const r = await rawExchange(agent.host, agent.port, [patched((h) => h.writeInt32LE(-5, 20))], {
      waitMs: 1000,
    });
    assert.equal(r.received.length, AGENT_REPLY_SIZE);
    assert.ok(decodeAgentReply(r.received).sessionId > 0);
  });

  it('closes a connection that announces a frame larger than MaxMessageSize', async () => {
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), frameHeader(65537)]);
    assert.equal(r.closed, true);
    assert.equal(r.received.length, AGENT_REPLY_SIZE, 'only the handshake reply was sent');
    assert.equal(decodeAgentReply(r.received).mode, Mode.None);
    await assertServing(agent);
  });

  it('closes on a frame length of 0x7fffffff or a negative one', async () => {
    for (const len of [0x7fffffff, -1, -0x80000000]) {
      const r = await rawExchange(agent.host, agent.port, [encodeClientHello(), frameHeader(len)]);
      assert.equal(r.closed, true, `length ${len}`);
    }
    await assertServing(agent);
  });

  it('answers frames pipelined right behind the hello', async () => {
    const ping = encodeMetaRequest('Ping', { token: 9 });
    const frame = Buffer.concat([frameHeader(ping.length - 5), ping]);
    const r = await rawExchange(agent.host, agent.port, [Buffer.concat([encodeClientHello(), frame])], {
      waitMs: 2000,
      onData: (got, socket) => {
        if (got.length >= AGENT_REPLY_SIZE + 12) socket.end();
      },
    });
    assert.ok(r.received.length >= AGENT_REPLY_SIZE + 12, 'the ping was answered');
    assert.equal(r.received.readInt32LE(AGENT_REPLY_SIZE), 4, 'data length 4');
    assert.equal(r.received.readInt32LE(AGENT_REPLY_SIZE + 4), 3, 'command 3 (Ping)');
    assert.equal(r.received.readInt32LE(AGENT_REPLY_SIZE + 8), 9, 'token 9 echoed');
  });

  it('closes a connection that sends nothing after HandshakeTimeout', async () => {
    const agent = quick;
    // Closed by the agent at all (within 20 s, however loaded the machine), and not before its timeout.
    const r = await rawExchange(agent.host, agent.port, [], { waitMs: 20_000 });
    assert.equal(r.closed, true);
    assert.equal(r.received.length, 0);
    assert.ok(r.elapsedMs >= HANDSHAKE_TIMEOUT_S * 1000 - 50, `not before the timeout (${r.elapsedMs} ms)`);
  });

  it('closes a connection that stalls halfway through the hello after HandshakeTimeout', async () => {
    const agent = quick;
    const r = await rawExchange(agent.host, agent.port, [encodeClientHello().subarray(0, 10)], {
      waitMs: 5000,
    });
    assert.equal(r.closed, true);
    assert.equal(r.received.length, 0);
    assert.ok(r.elapsedMs >= HANDSHAKE_TIMEOUT_S * 1000 - 50);
    await assertServing(agent);
  });

  it('logs handshake failures with the remote address', async () => {
    const agent = quick;
    const rec = await agent.waitForLog((l) => l.msg === 'handshake failed', 5000);
    assert.equal(rec.remote, '127.0.0.1');
    assert.equal(typeof rec.reason, 'string');
  });
});

describe('rejects in mode aes', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'aes' });
  });
  after(() => agent?.stop());

  handshakeRefusals(() => agent);

  it('closes the connection of a client with the wrong key and logs a protocol error, not the key', async () => {
    const wrong = randomBytes(32);
    const c = await agent.connect({ key: wrong });
    const client = new TestClient(c.connection);
    // Several frames at once: one could decrypt to valid padding by chance (~1/256), not all of them.
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, (_, token) => client.request(AgentType.Meta, 'Ping', { token }, 3000)),
    );
    assert.ok(
      results.every((r) => r.status === 'rejected'),
      'no request is answered',
    );
    await client.closed;
    // Mostly a decryption failure; about one time in 256 the first frame pads correctly and is garbage.
    const rec = await agent.waitForLog(
      (l) =>
        (l.msg?.startsWith('protocol error') === true && l.code === 'DECRYPT_FAILED') ||
        l.kind === 'first-frame-invalid',
    );
    assert.match(String(rec.msg), /key/);
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
          encodeMetaRequest('Ping', { token: 1 }),
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
