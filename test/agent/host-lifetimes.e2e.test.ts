/**
 * Host process lifetimes, end to end against the real `outpost serve`
 * process (issue 18, item 2): a host that holds nothing is stopped after
 * HostIdleTimeout and started again by the next request of its session; a
 * host with an open handle or a running process is not; MaxHostProcesses
 * bounds the agent's hosts, answering `LimitExceeded` at the bound, stopping
 * an idle host to make room but never a busy one.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AgentType,
  decodeResult,
  ErrorKind,
  FileAccess,
  FileMode,
  type ProductCommand,
  type Reply,
  type RequestOf,
} from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';
import { alive, childrenOf, parentOf, sleep, startProcess, until } from './e2e-helpers.js';

const OTTER = AgentType.Otter;
const BM = AgentType.BuildMaster;
/** The first request of a session may wait for a host to boot on a loaded machine. */
const BOOT_MS = 20_000;

/** Spares off: every host in these tests belongs to a session, so counts are exact. */
const NO_SPARES = { ...process.env, OUTPOST_SPARE_HOSTS: '0' };

/**
 * Host `pid` still runs for `agent`. Asked of the agent's children rather
 * than of the pid alone: with pid_max at 32768 a busy machine reuses a pid
 * within seconds.
 */
const hostOf = (agent: AgentProcess, pid: number) => childrenOf(agent.child.pid!).includes(pid);

function request<N extends ProductCommand>(
  c: TestClient,
  agentType: number,
  name: N,
  args: RequestOf<N>,
): Promise<Reply> {
  return c.request(agentType, name, args, BOOT_MS);
}

async function openForWrite(c: TestClient, agentType: number, path: string): Promise<number> {
  const r = await request(c, agentType, 'OpenFile', {
    path,
    fileMode: FileMode.Create,
    access: FileAccess.Write,
  });
  assert.equal(r.kind, 'response');
  return r.kind === 'response' ? decodeResult('OpenFile', r.body).handle : 0;
}

describe('idle hosts are stopped and started again on demand (real agent)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({
      mode: 'none',
      extraXml: '<HostIdleTimeout>0.3</HostIdleTimeout>',
      env: NO_SPARES,
    });
  });
  after(async () => {
    await agent?.stop();
  });

  test('a host that holds nothing is stopped; the next request of its session gets a normal answer', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const r1 = await request(c, OTTER, 'DirectoryExists', { path: agent.dir });
    assert.equal(r1.kind, 'response');
    const [first] = childrenOf(agent.child.pid!);
    assert.ok(first, 'the session has a host');
    await until(() => !hostOf(agent, first), 20_000, 'the idle host to be stopped').catch((e: Error) => {
      // What the agent logged says why.
      throw new Error(`${e.message}; hosts ${childrenOf(agent.child.pid!)}; ${agent.stdout().slice(-3000)}`);
    });
    const r2 = await request(c, OTTER, 'DirectoryExists', { path: agent.dir });
    assert.equal(r2.kind, 'response', 'answered by a fresh host');
    assert.equal(decodeResult('DirectoryExists', (r2 as Reply & { kind: 'response' }).body).exists, true);
    const now = childrenOf(agent.child.pid!);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], first);
    assert.equal(c.connection.closed, false, 'the same connection and session throughout');
    c.close();
    await until(() => childrenOf(agent.child.pid!).length === 0, 20_000, 'no hosts after the session');
  });

  test('a host with an open handle or a running process is not stopped', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const handle = await openForWrite(c, OTTER, join(agent.dir, 'held.txt'));
    const { reply, pid } = await startProcess(c, BM, 77, 'sleep', ['30']);
    assert.equal(reply.kind, 'response');
    const processHost = parentOf(pid);
    const hosts = childrenOf(agent.child.pid!);
    assert.equal(hosts.length, 2);
    const fileHost = hosts.find((h) => h !== processHost)!;
    await sleep(1500); // five idle timeouts
    assert.equal(hostOf(agent, fileHost), true, 'the host holding a handle lives');
    assert.equal(hostOf(agent, processHost), true, 'the host running a process lives');
    const w = await request(c, OTTER, 'WriteFile', { handle, position: -1, data: Buffer.from('kept') });
    assert.equal(w.kind, 'response', 'the handle still works');
    assert.equal((await request(c, OTTER, 'CloseFile', { handle })).kind, 'response');
    await until(() => !hostOf(agent, fileHost), 20_000, 'the host without handles to be stopped');
    assert.equal(hostOf(agent, processHost), true);
    assert.equal(alive(pid), true, 'the process runs on');
    await c.call(BM, 'TerminateProcess', { processToken: 77, entireTree: true });
    await until(() => !hostOf(agent, processHost), 20_000, 'the host whose process ended to be stopped');
    c.close();
  });
});

describe('MaxHostProcesses (real agent)', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({
      mode: 'none',
      extraXml: '<HostIdleTimeout>600</HostIdleTimeout><MaxHostProcesses>2</MaxHostProcesses>',
      env: NO_SPARES,
    });
  });
  after(async () => {
    await agent?.stop();
  });

  test('at the bound a new host is refused with LimitExceeded; an idle host makes room, a busy one never', async () => {
    const a = new TestClient((await agent.connect()).connection);
    const { reply, pid } = await startProcess(a, OTTER, 5, 'sleep', ['30']);
    assert.equal(reply.kind, 'response');
    const busyHost = parentOf(pid);
    const b = new TestClient((await agent.connect()).connection);
    const handle = await openForWrite(b, OTTER, join(agent.dir, 'b.txt'));
    const [heldHost] = childrenOf(agent.child.pid!).filter((h) => h !== busyHost);
    assert.ok(heldHost);

    const c = new TestClient((await agent.connect()).connection);
    const refused = await request(c, OTTER, 'DirectoryExists', { path: agent.dir });
    assert.equal(refused.kind, 'error');
    if (refused.kind === 'error') {
      assert.equal(refused.errorKind, ErrorKind.LimitExceeded);
      assert.match(refused.message, /MaxHostProcesses/);
      assert.match(refused.message, /retry|close/i, 'says what to do');
    }
    assert.equal(childrenOf(agent.child.pid!).length, 2, 'no host was started beyond the bound');

    // b's host holds nothing any more: it is stopped to make room (long before its idle timeout).
    assert.equal((await request(b, OTTER, 'CloseFile', { handle })).kind, 'response');
    const served = await request(c, OTTER, 'DirectoryExists', { path: agent.dir });
    assert.equal(served.kind, 'response');
    await until(() => !hostOf(agent, heldHost), 20_000, 'the idle host to be stopped for room');
    assert.equal(hostOf(agent, busyHost), true, 'the busy host is never stopped');
    assert.equal(alive(pid), true, 'its process runs on');
    assert.ok(childrenOf(agent.child.pid!).length <= 2);
    for (const x of [a, b, c]) x.close();
  });
});
