/**
 * The first-frame rule (PROTOCOL.md §3, §6, §7) over real sockets, with the
 * agent in-process: in mode aes every failure before the first valid frame
 * closes the connection with nothing written (wrong keys, garbage that pads
 * correctly, malformed requests, reserved tokens); sessions exist only from
 * the first valid frame; a session with running work is never displaced.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AgentConfig, parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import type { ProductRouter } from '../../src/agent/product.js';
import {
  AgentType,
  decodeReply,
  encodeClientMessage,
  encodeMetaRequest,
  encodeProductRequest,
  frameHeader,
  META_ERROR,
} from '../../src/protocol/index.js';
import { tempDir } from '../helpers/agent.js';
import { openRaw, type RawSession } from './raw-client.js';

const HOST = '127.0.0.1';
const KEY = randomBytes(32);
let dir: string;
let config: AgentConfig;

before(async () => {
  dir = await tempDir();
  config = await parseConfig(
    renderConfigXml({
      mode: 'aes',
      keyHex: KEY.toString('hex'),
      address: HOST,
      port: 0,
      // Room for the floods below: the caps have tests of their own.
      maxConcurrentHandshakes: 2000,
      maxHandshakesPerAddress: 2000,
    }),
    join(dir, 'InedoAgent.config'),
  );
});
after(() => rm(dir, { recursive: true, force: true }));

/** A router that never answers but holds the session busy, as a running process would. */
function busyRouter(reservedToken = -1): ProductRouter {
  return {
    handle(ctx) {
      ctx.session.holds++;
    },
    isTokenReserved: (_sessionId, token) => token === reservedToken,
    connectionClosed() {},
    sessionClosed() {},
    async close() {},
  };
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function ping(s: RawSession, token = 7): Promise<void> {
  s.send(encodeMetaRequest('Ping', { token }));
  const m = await s.next();
  assert.ok(m, 'a Ping reply');
  const r = decodeReply(m);
  assert.equal(r.kind, 'meta');
  if (r.kind === 'meta') assert.equal(r.body.readInt32LE(0), token);
}

/** Sends `frame` as the first frame; the agent must close with nothing written. */
async function assertSilentClose(
  agent: AgentHandle,
  frame: (s: RawSession) => Buffer,
  what: string,
): Promise<void> {
  const s = await openRaw(HOST, agent.port, { key: KEY });
  s.write(frame(s));
  assert.equal(await s.closesWithin(5000), true, `${what}: closed`);
  assert.equal(s.received().length, 0, `${what}: nothing written`);
}

describe('first frame, mode aes', () => {
  let agent: AgentHandle;
  before(async () => {
    agent = await startAgent(config, silentLogger(), { router: busyRouter(666) });
  });
  after(() => agent.close());

  it('320 wrong-key connections, one random frame each, get no byte back and create no session', async () => {
    const N = 320;
    const BATCH = 40;
    let silent = 0;
    for (let i = 0; i < N; i += BATCH) {
      const results = await Promise.all(
        Array.from({ length: BATCH }, async (_, k) => {
          const s = await openRaw(HOST, agent.port, { key: randomBytes(32) });
          // Half encrypt a real Ping with the wrong key, half are random blocks.
          const length = 32 + 16 * ((i + k) % 8);
          s.write(
            (i + k) % 2 === 0
              ? s.frame(encodeMetaRequest('Ping', { token: i + k }))
              : Buffer.concat([frameHeader(length), randomBytes(length)]),
          );
          const closed = await s.closesWithin(5000);
          return closed && s.received().length === 0;
        }),
      );
      silent += results.filter(Boolean).length;
    }
    assert.equal(silent, N, 'every wrong-key connection was closed without a byte after the handshake reply');
    assert.equal(agent.sessions.size, 0, 'no session was created');
    // And a client with the key is served.
    const good = await openRaw(HOST, agent.port, { key: KEY });
    await ping(good);
    good.destroy();
  });

  it('frames that decrypt with the key but are not well-formed requests close silently, whatever the cause', async () => {
    const before = agent.sessions.size;
    const cases: [string, Buffer][] = [
      ['an unknown agent type', encodeClientMessage(7, 3, Buffer.alloc(4))],
      ['an unknown meta command', encodeClientMessage(AgentType.Meta, 77, Buffer.alloc(0))],
      ['meta arguments that do not decode', encodeClientMessage(AgentType.Meta, 3, Buffer.alloc(2))],
      ['product data shorter than a token', encodeClientMessage(AgentType.Otter, 2, Buffer.alloc(2))],
      ['an unknown product command', encodeClientMessage(AgentType.Otter, 250, Buffer.alloc(4))],
      [
        'product arguments that do not decode',
        encodeClientMessage(AgentType.Otter, 2, Buffer.from([1, 0, 0, 0, 200])),
      ],
      [
        'a token reserved in the session',
        encodeProductRequest(AgentType.Otter, 'FileExists', 666, { path: 'x' }),
      ],
      ['random plaintext', randomBytes(40)],
    ];
    for (const [what, message] of cases) await assertSilentClose(agent, (s) => s.frame(message), what);
    assert.equal(agent.sessions.size, before, 'none of them created a session');
  });

  it('the session is created at the first valid frame, not at the handshake', async () => {
    const before = agent.sessions.size;
    const s = await openRaw(HOST, agent.port, { key: KEY });
    assert.ok(s.reply.sessionId > 0, 'a positive session ID is granted');
    assert.equal(agent.sessions.size, before, 'no session after the handshake');
    assert.ok(agent.unfinishedCount >= 1, 'the connection counts as an unfinished handshake');
    await ping(s);
    assert.equal(agent.sessions.size, before + 1);
    assert.ok(agent.sessions.get(s.reply.sessionId), 'the session has the granted ID');
    // After the first valid frame the ordinary answers apply: an unknown agent type is a MetaError, connection kept.
    s.send(encodeClientMessage(9, 42, Buffer.alloc(0)));
    const m = await s.next();
    assert.ok(m);
    const r = decodeReply(m);
    assert.equal(r.kind, 'meta-error');
    assert.equal(m.readInt32LE(0), META_ERROR);
    if (r.kind === 'meta-error') assert.equal(r.requestCommand, 42);
    await ping(s, 8);
    s.destroy();
  });
});

describe('sessions are created only by a valid first frame', () => {
  it('wrong-key handshakes neither create nor displace sessions; a session with running work is never ended to make room', async () => {
    const agent = await startAgent(config, silentLogger(), { router: busyRouter(), maxSessions: 1 });
    try {
      // A session with running work (the router holds it), then detached.
      const first = await openRaw(HOST, agent.port, { key: KEY });
      first.send(
        encodeProductRequest(AgentType.Otter, 'StartProcess', 1, {
          fileName: 'sleep',
          args: ['60'],
          workingDirectory: null,
          environment: {},
          flags: 0,
        }),
      );
      await ping(first);
      const busy = agent.sessions.get(first.reply.sessionId)!;
      assert.ok(busy.holds > 0);
      first.destroy();
      await first.closed;

      const flood = await Promise.all(
        Array.from({ length: 50 }, async () => {
          const s = await openRaw(HOST, agent.port, { key: randomBytes(32) });
          s.send(encodeMetaRequest('Ping', { token: 1 }));
          return (await s.closesWithin(5000)) && s.received().length === 0;
        }),
      );
      assert.ok(flood.every(Boolean));
      assert.equal(agent.sessions.size, 1);
      assert.equal(busy.closed, false, 'the busy session survived the flood');

      // A real new client finds no room: it is refused, the busy session lives on.
      const newcomer = await openRaw(HOST, agent.port, { key: KEY });
      newcomer.send(encodeMetaRequest('Ping', { token: 2 }));
      assert.equal(await newcomer.closesWithin(5000), true, 'the new session is refused');
      assert.equal(newcomer.received().length, 0);
      assert.equal(busy.closed, false);

      // Resuming the busy session works.
      const back = await openRaw(HOST, agent.port, { key: KEY, sessionId: busy.id });
      assert.equal(back.reply.sessionId, busy.id);
      await ping(back);
      back.destroy();
      await until(() => busy.detachedSince !== null);

      // Once it runs nothing, a detached session may be ended for a newcomer.
      busy.holds = 0;
      const later = await openRaw(HOST, agent.port, { key: KEY });
      await ping(later);
      assert.equal(busy.closed, true);
      assert.equal(agent.sessions.size, 1);
      later.destroy();
    } finally {
      await agent.close();
    }
  });
});
