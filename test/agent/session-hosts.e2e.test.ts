/**
 * Sessions and product host processes, end to end against the real
 * `outpost serve` process (PROTOCOL.md §5, §7): resume with a running
 * process (its buffered output only after the new connection's first valid
 * frame), tokens unique in flight and reserved across reconnects, Cancel,
 * session isolation, host crashes — also while the agent waits for a full
 * pipe (issue 18, item 1).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AgentType,
  decodeReply,
  ErrorKind,
  encodeMetaRequest,
  encodeProductRequest,
  type Reply,
} from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';
import {
  alive,
  childrenOf,
  exitedOf,
  parentOf,
  sleep,
  startProcess,
  stdoutText,
  until,
} from './e2e-helpers.js';
import { openRaw } from './raw-client.js';

const OTTER = AgentType.Otter;
const BM = AgentType.BuildMaster;

describe('sessions and host processes (real agent)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ mode: 'aes', detachedSessionTimeout: 30, sessionIdleTimeout: 60 });
  });
  after(async () => {
    await agent?.stop();
  });

  test('resume: the running process keeps its output, which comes only after the first valid frame', async () => {
    const a = await agent.connect();
    const c1 = new TestClient(a.connection);
    const token = 4242;
    const script = 'for i in 1 2 3 4 5 6; do echo line$i; sleep 0.2; done';
    const { reply } = await startProcess(c1, OTTER, token, 'sh', ['-c', script], agent.dir);
    assert.equal(reply.kind, 'response');
    await until(() => stdoutText(c1.events.get(token)).includes('line1'), 5000, 'first line');
    c1.connection.destroy(new Error('simulated network drop'));
    await c1.closed;
    const before = stdoutText(c1.events.get(token));
    await sleep(500); // output produced while detached is buffered by the agent

    const b = await agent.connect({ sessionId: a.sessionId });
    assert.equal(b.sessionId, a.sessionId, 'the same session is resumed');
    const c2 = new TestClient(b.connection);
    await sleep(300);
    assert.equal(c2.log.length, 0, 'nothing is sent before the connection proves itself');
    await c2.ping();
    assert.equal(c2.log[0]?.kind, 'meta', 'the reply to the first frame comes first');
    await until(() => exitedOf(c2.events.get(token)) !== null, 10000, 'Exited on the new connection');
    assert.equal(before + stdoutText(c2.events.get(token)), 'line1\nline2\nline3\nline4\nline5\nline6\n');
    assert.deepEqual(exitedOf(c2.events.get(token)), { exitCode: 0, signal: null });
    c2.close();
  });

  test('a running process keeps its token reserved across reconnects: reuse is InvalidArgument', async () => {
    const a = await agent.connect();
    const c1 = new TestClient(a.connection);
    const T = 31337;
    const { reply, pid } = await startProcess(c1, OTTER, T, 'sleep', ['30']);
    assert.equal(reply.kind, 'response');
    c1.connection.destroy();
    await c1.closed;

    // AES: a new connection whose first frame reuses the token is closed silently.
    const raw = await openRaw(agent.host, agent.port, { key: agent.key!, sessionId: a.sessionId });
    raw.send(encodeProductRequest(BM, 'FileExists', T, { path: agent.dir }));
    assert.equal(await raw.closesWithin(5000), true);
    assert.equal(raw.received().length, 0);

    const b = await agent.connect({ sessionId: a.sessionId });
    const c2 = new TestClient(b.connection);
    await c2.ping();
    for (const r of [
      await startProcess(c2, OTTER, T, 'true', []).then((x) => x.reply),
      await c2.sendRaw(encodeProductRequest(BM, 'FileExists', T, { path: agent.dir }), T),
    ]) {
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') {
        assert.equal(r.errorKind, ErrorKind.InvalidArgument);
        assert.match(r.message, /reserved/);
      }
    }
    // Ending it delivers Exited here, and frees the token.
    await c2.call(OTTER, 'TerminateProcess', { processToken: T, entireTree: true });
    await until(() => exitedOf(c2.events.get(T)) !== null, 10000, 'Exited of the terminated process');
    assert.equal(alive(pid), false);
    const again = await c2.sendRaw(encodeProductRequest(BM, 'FileExists', T, { path: agent.dir }), T);
    assert.equal(again.kind, 'response', 'the token is free once its Exited was delivered');
    c2.close();
  });

  test('a token in flight on a connection cannot be reused, across product types', async () => {
    const c = new TestClient((await agent.connect()).connection);
    await c.ping();
    const first = c.sendRaw(encodeProductRequest(OTTER, 'FileExists', 9, { path: agent.dir }), 9);
    const replies: Reply[] = [];
    c.connection.on('message', (m) => replies.push(decodeReply(m)));
    // Written in the same tick: the second arrives while the first is in flight.
    c.connection.send(encodeProductRequest(AgentType.Hedgehog, 'DirectoryExists', 9, { path: agent.dir }));
    const r = await first;
    // The first reply for token 9 is the refusal of the second request (the host is still starting).
    assert.equal(r.kind, 'error');
    if (r.kind === 'error') assert.equal(r.errorKind, ErrorKind.InvalidArgument);
    await until(
      () => replies.filter((x) => x.kind === 'response').length === 1,
      10000,
      'the first request answered',
    );
    c.close();
  });

  test('Cancel ends a running process with Exited and has no reply of its own', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const T = 501;
    const { pid } = await startProcess(c, OTTER, T, 'sleep', ['30']);
    c.connection.send(encodeProductRequest(BM, 'Cancel', 502, { targetToken: T }));
    await until(() => exitedOf(c.events.get(T)) !== null, 10000, 'Exited after Cancel');
    assert.equal(alive(pid), false);
    await c.ping();
    assert.equal(
      c.log.some((r) => 'token' in r && r.token === 502),
      false,
      'nothing was sent for the Cancel itself',
    );
    c.close();
  });

  test('two sessions cannot use each other’s handles', async () => {
    const file = join(agent.dir, 'secret.txt');
    await writeFile(file, 'only for A');
    const a = new TestClient((await agent.connect()).connection);
    const b = new TestClient((await agent.connect()).connection);
    const { handle } = await a.call(OTTER, 'OpenFile', { path: file, fileMode: 3, access: 1 });
    const stolen = await b.request(OTTER, 'ReadFile', { handle, position: 0, maxCount: 100 });
    assert.equal(stolen.kind, 'error');
    if (stolen.kind === 'error') assert.equal(stolen.errorKind, ErrorKind.InvalidArgument);
    const mine = await a.call(OTTER, 'ReadFile', { handle, position: 0, maxCount: 100 });
    assert.equal(Buffer.from(mine.data).toString(), 'only for A');
    a.close();
    b.close();
  });

  test('SIGKILL of a host: HostCrashed for its process, its tree killed, then a fresh host', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const token = 777;
    const { reply, pid: sleeper } = await startProcess(c, OTTER, token, 'sleep', ['30']);
    assert.equal(reply.kind, 'response');
    assert.ok(alive(sleeper));
    const hostPid = parentOf(sleeper);
    assert.ok(
      childrenOf(agent.child.pid!).includes(hostPid),
      'the process runs under a host child of the agent',
    );
    process.kill(hostPid, 'SIGKILL');
    const errors = () => c.log.filter((x) => x.kind === 'error' && x.token === token);
    await until(() => errors().length > 0, 5000, 'HostCrashed on the process token');
    const err = errors()[0]!;
    assert.ok(err.kind === 'error' && err.errorKind === ErrorKind.HostCrashed);
    await until(() => !alive(sleeper), 5000, 'the orphaned process tree to be killed');
    assert.deepEqual(await c.call(OTTER, 'DirectoryExists', { path: agent.dir }), { exists: true });
    assert.ok(alive(agent.child.pid!));
    c.close();
  });

  test('a host killed while the agent waits for its full pipe: every request ends, the connection keeps serving', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const path = join(agent.dir, 'big.bin');
    const { handle } = await c.call(BM, 'OpenFile', { path, fileMode: 2, access: 2 });
    const { pid: sleeper } = await startProcess(c, BM, 900, 'sleep', ['30']);
    const hostPid = parentOf(sleeper);
    process.kill(hostPid, 'SIGSTOP'); // it reads nothing: the pipe fills, the agent stops reading us
    const chunk = Buffer.alloc(1 << 20, 3);
    // Generous timeouts: the writes after the kill go to a fresh host, which boots slowly on a loaded machine.
    const writes = Array.from({ length: 64 }, (_, i) =>
      c.sendRaw(
        encodeProductRequest(BM, 'WriteFile', 1000 + i, { handle, position: -1, data: chunk }),
        1000 + i,
        90_000,
      ),
    );
    // A Ping behind them: meta is answered by the agent, but only once it reads this far.
    const ping = c.sendRawMeta(encodeMetaRequest('Ping', { token: 64 }), 3, 90_000);
    await sleep(500);
    process.kill(hostPid, 'SIGKILL');
    const results = await Promise.all(writes);
    assert.equal(results.length, 64, 'every WriteFile was answered');
    // In flight in the dead host: HostCrashed; read after its death: the fresh host numbers its
    // handles elsewhere and knows this one was lost with its predecessor, HostCrashed too.
    const kinds = new Set(results.map((r) => (r.kind === 'error' ? r.errorKind : r.kind)));
    assert.ok(kinds.has(ErrorKind.HostCrashed), [...kinds].join());
    for (const k of kinds) assert.ok([ErrorKind.HostCrashed, 'response'].includes(k), k);
    const late = await c.request(BM, 'WriteFile', { handle, position: -1, data: chunk }, 90_000);
    assert.equal(late.kind, 'error');
    if (late.kind === 'error') {
      assert.equal(late.errorKind, ErrorKind.HostCrashed);
      assert.match(late.message, /host process of this session that ended \(killed by SIGKILL\)/);
    }
    const fresh = await c.call(BM, 'OpenFile', { path, fileMode: 4, access: 2 });
    assert.notEqual(fresh.handle, handle, 'a fresh host never reuses a handle of the dead one');
    assert.equal((await ping).kind, 'meta');
    assert.deepEqual(await c.call(BM, 'DirectoryExists', { path: agent.dir }), { exists: true });
    c.close();
  });
});
