/**
 * The AES replay cache over real sockets (PROTOCOL.md §3): a frame captured
 * on one connection and written again — on another connection, on the same
 * one, or with its first cipher block altered — is refused: the connection
 * closes and nothing is written. A fresh frame of the same request is served.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import { decodeReply, encodeMetaRequest, FRAME_LENGTH_SIZE } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/agent.js';
import { openRaw, type RawSession } from './raw-client.js';

const HOST = '127.0.0.1';
const KEY = randomBytes(32);
let dir: string;
let agent: AgentHandle;

before(async () => {
  dir = await tempDir();
  const config = await parseConfig(
    renderConfigXml({ mode: 'aes', keyHex: KEY.toString('hex'), address: HOST, port: 0 }),
    join(dir, 'InedoAgent.config'),
  );
  agent = await startAgent(config, silentLogger());
});
after(async () => {
  await agent.close();
  await rm(dir, { recursive: true, force: true });
});

async function pingReply(s: RawSession): Promise<number | null> {
  const m = await s.next();
  if (!m) return null;
  const r = decodeReply(m);
  return r.kind === 'meta' ? r.body.readInt32LE(0) : null;
}

describe('AES replay cache', () => {
  it('a captured frame replayed on another connection, on the same one, or with its first block altered is refused silently', async () => {
    const hits0 = agent.replayHits;
    const a = await openRaw(HOST, agent.port, { key: KEY });
    const captured = a.send(encodeMetaRequest('Ping', { token: 4242 }));
    assert.equal(await pingReply(a), 4242, 'the original frame is served');

    // On another connection: only nextIV (the first block) decrypts wrongly, so it would be a valid Ping.
    const b = await openRaw(HOST, agent.port, { key: KEY });
    b.write(captured);
    assert.equal(await b.closesWithin(5000), true, 'replay on another connection: closed');
    assert.equal(b.received().length, 0, 'replay on another connection: nothing written');

    // With its first cipher block altered: bytes 5–8 of that block flip the same bits of the
    // Ping's token (CBC), so without the cache it would be a valid Ping with another token.
    const altered = Buffer.from(captured);
    for (let i = FRAME_LENGTH_SIZE + 5; i < FRAME_LENGTH_SIZE + 9; i++) altered[i]! ^= 0x5a;
    const c = await openRaw(HOST, agent.port, { key: KEY });
    c.write(altered);
    assert.equal(await c.closesWithin(5000), true, 'altered replay: closed');
    assert.equal(c.received().length, 0, 'altered replay: nothing written');

    // On the same connection, after it was served.
    const before = a.received().length;
    a.write(captured);
    assert.equal(await a.closesWithin(5000), true, 'replay on the same connection: closed');
    assert.equal(a.received().length, before, 'replay on the same connection: nothing more written');

    assert.equal(agent.replayHits - hits0, 3, 'three replays counted');

    // The same request in a fresh frame is served: it is the frame that is refused, not the request.
    const d = await openRaw(HOST, agent.port, { key: KEY });
    d.send(encodeMetaRequest('Ping', { token: 4242 }));
    assert.equal(await pingReply(d), 4242);
    d.destroy();
  });
});
