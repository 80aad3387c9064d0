/**
 * Reconnection with the same session ID against a real agent: a manual
 * reconnect loses nothing and running processes keep streaming; an abrupt
 * drop with automatic reconnection rejects requests in flight as retryable
 * and reattaches the processes; a session that ended meanwhile is reported
 * as lost, to requests and processes alike.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConnectionError, type RemoteProcess, SessionLostError } from '../../src/index.js';
import { type ClientAgent, delay, internals, startClientAgent } from './helpers.js';

const EMIT = fileURLToPath(new URL('../fixtures/processes/emit.mjs', import.meta.url));

/** A node script printing 0…count-1, one line every `everyMs`. */
const ticker = (count: number, everyMs: number) => [
  '-e',
  `let i=0;const t=setInterval(()=>{console.log(i++);if(i===${count})clearInterval(t)},${everyMs})`,
];

/** Collects stdout lines, calling `onLine` for each. */
async function lines(proc: RemoteProcess, onLine: (n: number) => Promise<void> | void): Promise<number[]> {
  const out: number[] = [];
  for await (const line of createInterface({ input: proc.stdout })) {
    out.push(Number(line));
    await onLine(Number(line));
  }
  return out;
}

describe('AgentClient reconnection', () => {
  let env: ClientAgent;
  let cwd: string;
  before(async () => {
    env = await startClientAgent();
    cwd = join(env.root, 'work');
    await mkdir(cwd);
  });
  after(() => env?.stop());

  it('reconnect() keeps the session: the process streams on and no output is lost', async () => {
    const client = await env.connect();
    try {
      const id = client.sessionId;
      const proc = await client.spawn(process.execPath, ticker(40, 15), { cwd });
      proc.stderr.resume();
      let result: { resumed: boolean; sessionId: number } | undefined;
      const got = await lines(proc, async (n) => {
        if (n === 8) {
          const reconnecting = client.reconnect();
          const ping = client.ping(); // waits for the new connection
          result = await reconnecting;
          assert.ok((await ping) >= 0);
        }
      });
      assert.deepEqual(result, { resumed: true, sessionId: id });
      assert.deepEqual(
        got,
        Array.from({ length: 40 }, (_, i) => i),
      );
      assert.deepEqual(await proc.exited, { code: 0, signal: null });
      assert.equal(client.sessionId, id);
    } finally {
      await client.close();
    }
  });

  it('reconnect() while a stdout is full (connection paused) still loses nothing', async () => {
    const client = await env.connect();
    try {
      const size = 3 * 1024 * 1024;
      const proc = await client.spawn(process.execPath, [EMIT, String(size)], {
        cwd,
        highWaterMark: 64 * 1024,
      });
      let stderr = '';
      proc.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      for (let i = 0; i < 100 && !internals(client).channel.conn?.isPaused; i++) await delay(20);
      assert.equal(internals(client).channel.conn?.isPaused, true, 'stdout is full');
      assert.equal((await client.reconnect()).resumed, true);
      const hash = createHash('sha256');
      let total = 0;
      for await (const chunk of proc.stdout) {
        hash.update(chunk as Buffer);
        total += (chunk as Buffer).length;
      }
      assert.deepEqual(await proc.exited, { code: 0, signal: null });
      assert.equal(total, size);
      assert.equal(hash.digest('hex'), stderr);
    } finally {
      await client.close();
    }
  });

  it('after an abrupt drop, in-flight requests reject as retryable and processes reattach', async () => {
    const client = await env.connect({ reconnect: { retries: 10, delayMs: 50 } });
    try {
      const id = client.sessionId;
      const proc = await client.spawn(process.execPath, ticker(30, 20), { cwd });
      proc.stderr.resume();
      let inFlight: Promise<unknown> | undefined;
      const got = await lines(proc, (n) => {
        if (n === 5) {
          inFlight = client.ping().catch((e: unknown) => e);
          internals(client).channel.conn?.socket.destroy();
        }
      });
      const err = await inFlight;
      assert.ok(err instanceof ConnectionError, String(err));
      assert.equal(err.code, 'CONNECTION_LOST');
      assert.equal(err.retryable, true);
      // Lines the agent had already written into the dropped socket may be gone; the rest arrived in order.
      assert.equal(got.at(-1), 29);
      assert.ok(got.some((n) => n > 5));
      assert.deepEqual(
        got,
        [...got].sort((a, b) => a - b),
      );
      assert.deepEqual(await proc.exited, { code: 0, signal: null });
      assert.equal(client.sessionId, id);
      assert.equal(client.connected, true);
      assert.ok((await client.ping()) >= 0);
    } finally {
      await client.close();
    }
  });

  it('without automatic reconnection a drop fails everything clearly, and reconnect() resumes', async () => {
    const client = await env.connect();
    try {
      const id = client.sessionId;
      const proc = await client.spawn('sleep', ['30'], { cwd });
      const pending = client.ping().catch((e: unknown) => e);
      internals(client).channel.conn?.socket.destroy();
      const e1 = await pending;
      assert.ok(e1 instanceof ConnectionError && e1.code === 'CONNECTION_LOST' && e1.retryable);
      await assert.rejects(
        proc.exited,
        (e: unknown) => e instanceof ConnectionError && /reconnection is off/.test(e.message),
      );
      await assert.rejects(
        client.ping(),
        (e: unknown) => e instanceof ConnectionError && e.code === 'NOT_CONNECTED',
      );
      assert.deepEqual(await client.reconnect(), { resumed: true, sessionId: id });
      const listed = await client.listProcesses();
      assert.equal(
        listed.find((p) => p.token === proc.token)?.running,
        true,
        'the process ran on in the session',
      );
    } finally {
      await client.closeSession();
    }
  });

  it('a session that ended while detached is reported as lost', async () => {
    const client = await env.connect({ reconnect: { retries: 5, delayMs: 400 } });
    try {
      const oldId = client.sessionId;
      const proc = await client.spawn('sleep', ['30'], { cwd });
      const pending = client.ping().catch((e: unknown) => e);
      internals(client).channel.conn?.socket.destroy();
      // Another connection of the same principal ends the session before the client is back.
      const other = await env.connect({ sessionId: oldId });
      assert.equal(other.sessionId, oldId);
      await other.closeSession();
      const err = await pending;
      assert.ok(err instanceof SessionLostError, String(err));
      assert.equal(err.previousSessionId, oldId);
      assert.match(err.message, /was lost/);
      await assert.rejects(proc.exited, (e: unknown) => e instanceof SessionLostError);
      assert.notEqual(client.sessionId, oldId);
      assert.equal(client.sessionId, err.newSessionId);
      assert.ok((await client.ping()) >= 0, 'the client goes on in the new session');
      await delay(10);
    } finally {
      await client.close();
    }
  });
});
