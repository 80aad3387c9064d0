/**
 * Unfinished connections in mode none (PROTOCOL.md §2, §6, §7), over real
 * sockets with the agent in-process: frames that are not valid requests get
 * their ordinary answers from the agent itself, without a session, and the
 * connection stays unfinished (still under HandshakeTimeout); principals are
 * remote addresses, and a connection from another address that asks for a
 * session is closed at its first frame without an answer.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import {
  AgentType,
  decodeReply,
  ErrorKind,
  encodeClientMessage,
  encodeMetaRequest,
  type Reply,
} from '../../src/protocol/index.js';
import { tempDir } from '../helpers/agent.js';
import { openRaw, type RawSession } from './raw-client.js';

const HOST = '127.0.0.1';
const TIMEOUT_S = 1;
let dir: string;
let agent: AgentHandle;

before(async () => {
  dir = await tempDir();
  const config = await parseConfig(
    renderConfigXml({ mode: 'none', address: HOST, port: 0, handshakeTimeout: TIMEOUT_S }),
    join(dir, 'InedoAgent.config'),
  );
  agent = await startAgent(config, silentLogger());
});
after(async () => {
  await agent.close();
  await rm(dir, { recursive: true, force: true });
});

async function exchange(s: RawSession, message: Buffer): Promise<Reply> {
  s.send(message);
  const m = await s.next();
  assert.ok(m, 'an answer');
  return decodeReply(m);
}

async function ping(s: RawSession, token = 11): Promise<void> {
  const r = await exchange(s, encodeMetaRequest('Ping', { token }));
  assert.equal(r.kind, 'meta');
  if (r.kind === 'meta') assert.equal(r.body.readInt32LE(0), token);
}

describe('unfinished connections (mode none)', () => {
  it('invalid first frames get ordinary answers without a session; a valid one then creates it', async () => {
    const sessions = agent.sessions.size;
    const s = await openRaw(HOST, agent.port);
    const unknownType = await exchange(s, encodeClientMessage(7, 55, Buffer.alloc(0)));
    assert.equal(unknownType.kind, 'meta-error');
    if (unknownType.kind === 'meta-error') {
      assert.equal(unknownType.requestCommand, 55, 'MetaError carries the rejected command');
      assert.match(unknownType.message, /unknown agent type 7/);
    }
    const unknownMeta = await exchange(s, encodeClientMessage(AgentType.Meta, 66, Buffer.alloc(0)));
    assert.equal(unknownMeta.kind, 'meta-error');
    if (unknownMeta.kind === 'meta-error') assert.equal(unknownMeta.message, 'unknown meta command 66');
    const tokenData = Buffer.alloc(4);
    tokenData.writeInt32LE(31, 0);
    const unknownProduct = await exchange(s, encodeClientMessage(AgentType.Hedgehog, 250, tokenData));
    assert.equal(unknownProduct.kind, 'error');
    if (unknownProduct.kind === 'error') {
      assert.equal(unknownProduct.token, 31);
      assert.equal(unknownProduct.errorKind, ErrorKind.Unsupported);
    }
    const badArgs = await exchange(
      s,
      encodeClientMessage(AgentType.Otter, 2, Buffer.concat([tokenData, Buffer.from([200])])),
    );
    assert.equal(badArgs.kind, 'error');
    if (badArgs.kind === 'error') assert.equal(badArgs.errorKind, ErrorKind.InvalidArgument);
    assert.equal(agent.sessions.size, sessions, 'no session yet');
    assert.ok(agent.unfinishedCount >= 1, 'still unfinished');

    await ping(s);
    assert.equal(agent.sessions.size, sessions + 1, 'the first valid frame created the session');
    // Past the timeout the finished connection is still served.
    await sleep(TIMEOUT_S * 1000 + 300);
    await ping(s, 12);
    s.destroy();
  });

  it('HandshakeTimeout runs until the first valid frame: answered invalid frames do not stop it', async () => {
    const idle = await openRaw(HOST, agent.port);
    const chatty = await openRaw(HOST, agent.port);
    const r = await exchange(chatty, encodeClientMessage(9, 1, Buffer.alloc(0)));
    assert.equal(r.kind, 'meta-error');
    assert.equal(await idle.closesWithin(TIMEOUT_S * 1000 + 3000), true, 'the silent connection is closed');
    assert.equal(
      await chatty.closesWithin(TIMEOUT_S * 1000 + 3000),
      true,
      'the one with only invalid frames too',
    );
  });

  it('malformed meta arguments and product data shorter than a token close the connection', async () => {
    const a = await openRaw(HOST, agent.port);
    a.send(encodeClientMessage(AgentType.Meta, 3, Buffer.alloc(1)));
    assert.equal(await a.closesWithin(3000), true);
    assert.equal(a.received().length, 0);
    const b = await openRaw(HOST, agent.port);
    await ping(b);
    b.send(encodeClientMessage(AgentType.Otter, 2, Buffer.alloc(3)));
    assert.equal(await b.closesWithin(3000), true);
  });

  it('a connection from another address asking for the session is closed at its first frame without an answer', async () => {
    const owner = await openRaw(HOST, agent.port);
    await ping(owner);
    const id = owner.reply.sessionId;
    const other = await openRaw(HOST, agent.port, { sessionId: id, localAddress: '127.0.0.2' });
    assert.equal(other.reply.sessionId, id, 'the live session ID is granted (IDs are not secrets)');
    other.send(encodeMetaRequest('Ping', { token: 1 }));
    assert.equal(await other.closesWithin(3000), true, 'closed');
    assert.equal(other.received().length, 0, 'no answer');
    // The owner's address resumes it.
    const again = await openRaw(HOST, agent.port, { sessionId: id });
    assert.equal(again.reply.sessionId, id);
    await ping(again);
    assert.equal(agent.sessions.get(id)?.connections.size, 2);
    // An ID that names no live session gets a fresh one.
    const stale = await openRaw(HOST, agent.port, { sessionId: 0x7ffffff0 });
    assert.notEqual(stale.reply.sessionId, 0x7ffffff0);
    assert.ok(stale.reply.sessionId > 0);
    for (const s of [owner, again, stale]) s.destroy();
  });
});
