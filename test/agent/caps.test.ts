/**
 * The handshake caps over real sockets (PROTOCOL.md §6): unfinished
 * handshakes are counted per address (MaxHandshakesPerAddress, default 32)
 * and overall (MaxConcurrentHandshakes, default 100); a newcomer past a cap
 * closes the oldest unfinished handshake of its own address, or of the
 * address that has the most. Floods come from 127.0.0.2–127.0.0.250 (Linux
 * routes all of 127/8 to loopback); the good client from 127.0.0.1 must be
 * served on its first try.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import { decodeReply, encodeMetaRequest } from '../../src/protocol/index.js';
import { tempDir } from '../helpers/agent.js';
import { openRaw } from './raw-client.js';

const HOST = '127.0.0.1';
let dir: string;
let agent: AgentHandle;

before(async () => {
  dir = await tempDir();
  // Defaults for both caps; a long timeout so that only the caps close anything.
  const config = await parseConfig(
    renderConfigXml({ mode: 'none', address: HOST, port: 0, handshakeTimeout: 60 }),
    join(dir, 'InedoAgent.config'),
  );
  assert.equal(config.listener.maxConcurrentHandshakes, 100);
  assert.equal(config.listener.maxHandshakesPerAddress, 32);
  agent = await startAgent(config, silentLogger());
});
after(async () => {
  await agent.close();
  await rm(dir, { recursive: true, force: true });
});

interface Stalled {
  socket: Socket;
  address: string;
  closed: boolean;
}

/** A connection that is accepted and then sends nothing (a stalled handshake). */
function stall(localAddress: string): Promise<Stalled> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HOST, port: agent.port, localAddress });
    const s: Stalled = { socket, address: localAddress, closed: false };
    socket.on('error', () => {});
    socket.once('close', () => {
      s.closed = true;
    });
    socket.once('connect', () => resolve(s));
    socket.once('error', reject);
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One try: handshake and Ping from `localAddress`; true when answered. */
async function goodClient(localAddress: string): Promise<boolean> {
  const s = await openRaw(HOST, agent.port, { localAddress });
  s.send(encodeMetaRequest('Ping', { token: 99 }));
  const m = await s.next(5000).catch(() => null);
  s.destroy();
  if (!m) return false;
  const r = decodeReply(m);
  return r.kind === 'meta' && r.body.readInt32LE(0) === 99;
}

function closeAll(list: Stalled[]): Promise<void> {
  for (const s of list) s.socket.destroy();
  return until(() => agent.unfinishedCount === 0, 'no unfinished handshakes');
}

describe('handshake caps', () => {
  it('per address: past 32, the oldest of that address is closed; a good client of the same address gets in', async () => {
    const flood: Stalled[] = [];
    for (let i = 0; i < 40; i++) flood.push(await stall('127.0.0.5'));
    await until(() => flood.filter((s) => s.closed).length === 8, '8 of the 40 closed');
    assert.deepEqual(
      flood.map((s, i) => (s.closed ? i : -1)).filter((i) => i >= 0),
      [0, 1, 2, 3, 4, 5, 6, 7],
      'the oldest ones were closed',
    );
    assert.equal(agent.unfinishedCount, 32);
    // Another address is untouched by this address's cap.
    const other = await stall('127.0.0.6');
    assert.equal(await goodClient('127.0.0.5'), true, 'served on its first try from the flooding address');
    assert.equal(other.closed, false);
    await closeAll([...flood, other]);
  });

  it('overall: a flood from 127.0.0.2–127.0.0.250 does not keep a good client from 127.0.0.1 out', async () => {
    const flood: Stalled[] = [];
    // Three stalled handshakes from each of 249 addresses, in rounds; then a second wave while the good client connects.
    for (let round = 0; round < 3; round++)
      flood.push(...(await Promise.all(Array.from({ length: 249 }, (_, i) => stall(`127.0.0.${i + 2}`)))));
    await until(() => agent.unfinishedCount <= 100, 'at most 100 unfinished');
    const wave = Promise.all(Array.from({ length: 249 }, (_, i) => stall(`127.0.0.${i + 2}`)));
    const served = await goodClient('127.0.0.1');
    flood.push(...(await wave));
    assert.equal(served, true, 'the good client was served on its first try');
    await until(() => agent.unfinishedCount <= 100, 'at most 100 unfinished');
    // The agent's count drops when it closes; our ends see the FIN a little later (a loaded machine).
    await until(() => flood.filter((s) => !s.closed).length <= 100, 'our ends of the closed ones to see it');
    // Fair: the flood closed its own connections, spread over its addresses.
    const open = new Map<string, number>();
    for (const s of flood) if (!s.closed) open.set(s.address, (open.get(s.address) ?? 0) + 1);
    const counts = [...open.values()];
    assert.ok(counts.reduce((a, b) => a + b, 0) <= 100);
    assert.ok(
      Math.max(...counts) - Math.min(...counts) <= 1,
      `balanced across addresses: ${Math.min(...counts)}–${Math.max(...counts)}`,
    );
    await closeAll(flood);
  });
});
