/**
 * The SDK against an independent agent written from the contract (see
 * contract-agent.ts): the meta FIFO (replies without tokens, in order;
 * UpdateAgent confirmed by the Ping after it, or failed by MetaError 1),
 * product tokens, string error kinds, null GetFileInfo, hex hashes, signal
 * deaths, Cancel, and the fallbacks for Outpost's extensions (DeleteFiles →
 * DeleteFile per path; ListProcesses → a clear Unsupported).
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import { AgentClient, entryName, entryType, isRemoteError, MetaError, RemoteError } from '../../src/index.js';
import { ContractAgent, type ContractAgentOptions, fileEntry, Out } from './contract-agent.js';

const agents: ContractAgent[] = [];
const clients: AgentClient[] = [];
after(async () => {
  for (const a of agents) await a.stop();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
});

async function start(
  options: ContractAgentOptions = {},
): Promise<{ agent: ContractAgent; client: AgentClient }> {
  const agent = await new ContractAgent(options).start();
  agents.push(agent);
  const client = await AgentClient.connect({
    host: '127.0.0.1',
    port: agent.port,
    mode: 'none',
    timeoutMs: 5000,
  });
  clients.push(client);
  return { agent, client };
}

/** Meta commands the agent received, in order, by code. */
const metaOrder = (agent: ContractAgent) =>
  agent.received.filter((f) => f.agentType === 0).map((f) => f.command);

describe('SDK against a contract-only agent', () => {
  it('reads the contract AgentInfo and the packed handshake version', async () => {
    const { client } = await start({ version: (3 << 24) | (1 << 16) | (4 << 8) | 1 });
    assert.equal(client.agentVersion, '3.1.4.1');
    const info = await client.info();
    assert.equal(info.product, 'ContractAgent');
    assert.equal(info.protocolVersion, 1000);
    assert.equal(info.hostName, 'fake-host');
    assert.equal(info.processId, 4242);
    assert.deepEqual([...info.supportedAgentTypes], [0, 1, 2, 3]);
    assert.equal(client.pathSeparator, '/');
    assert.equal(await client.rootPath('Otter'), '/srv/contract/1');
    assert.equal(await client.rootPath(), '/srv/contract/2', 'the default product is BuildMaster (2)');
  });

  it('UpdateAgent succeeds when the Ping after it is answered, and later meta replies stay matched', async () => {
    const { agent, client } = await start();
    const [info, , root] = await Promise.all([
      client.info(),
      client.update({ extensions: [{ name: 'x.upack', data: 'zip' }] }),
      client.rootPath('Hedgehog'),
    ]);
    assert.equal(info.product, 'ContractAgent');
    assert.equal(root, '/srv/contract/3');
    // GetAgentInfo at connect, then info, UpdateAgent, the confirming Ping, GetAgentRootPath.
    assert.deepEqual(metaOrder(agent), [4, 4, 1, 3, 2]);
    assert.ok((await client.ping()) >= 0);
  });

  it('UpdateAgent fails with MetaError 1; the Ping queued behind it and the next requests still match', async () => {
    const { agent, client } = await start({ updateFailure: 'disk full' });
    const update = client.update({
      product: 'Otter',
      binaries: [{ name: 'agent.dll', data: Buffer.from([1]) }],
    });
    const root = client.rootPath('Otter');
    await assert.rejects(update, (err: unknown) => {
      assert.ok(err instanceof MetaError);
      assert.equal(err.requestCommand, 1);
      assert.match(err.message, /disk full/);
      return true;
    });
    assert.equal(await root, '/srv/contract/1');
    assert.equal((await client.info()).hostName, 'fake-host');
    assert.deepEqual(metaOrder(agent), [4, 1, 3, 2, 4]);
    const update0 = agent.frames(0, 1)[0]!.data;
    assert.equal(update0[0], 1, 'targetType Otter');
  });

  it('refuses an UpdateAgent file name with a directory part before sending', async () => {
    const { client } = await start();
    await assert.rejects(client.update({ binaries: [{ name: '../x', data: '' }] }), TypeError);
  });

  it('rm of several files falls back to one DeleteFile per path when DeleteFiles is Unsupported', async () => {
    const deleted: string[] = [];
    const { agent, client } = await start({
      handlers: {
        7: (args, reply) => {
          deleted.push(args.string());
          reply.response();
        },
      },
    });
    await client.rm(['/t/a', '/t/b', '/t/c']);
    assert.deepEqual(deleted.sort(), ['/t/a', '/t/b', '/t/c']);
    assert.equal(agent.frames(2, 21).length, 1, 'DeleteFiles was tried once');
    await client.rm(['/t/d', '/t/e']);
    assert.equal(agent.frames(2, 21).length, 1, 'and not again once the agent said Unsupported');
    assert.deepEqual(deleted.sort(), ['/t/a', '/t/b', '/t/c', '/t/d', '/t/e']);
  });

  it('listProcesses says clearly that the agent lacks the extension', async () => {
    const { client } = await start();
    await assert.rejects(client.listProcesses(), (err: unknown) => {
      assert.ok(isRemoteError(err, 'Unsupported'));
      assert.match((err as Error).message, /cannot list processes.*Outpost extension/);
      return true;
    });
  });

  it('stat: a null FileEntry is NotFound; an entry keeps fullPath and mode, name and type are derived', async () => {
    const { client } = await start({
      handlers: {
        4: (args, reply) => {
          const path = args.string();
          if (path === 'missing') return reply.response(new Out().bool(false).done());
          const out = new Out().bool(true);
          fileEntry(out, {
            fullPath: `/srv/${path}`,
            isDirectory: false,
            size: 5,
            mtimeMs: 1_700_000_000_123,
            mode: 0o120777,
          });
          reply.response(out.done());
        },
      },
    });
    await assert.rejects(client.stat('missing'), (err: unknown) => isRemoteError(err, 'NotFound'));
    const st = await client.stat('link');
    assert.equal(st.fullPath, '/srv/link');
    assert.equal(entryName(st), 'link');
    assert.equal(entryType(st), 'symlink');
    assert.equal(st.lastWriteUtc.getTime(), 1_700_000_000_123);
  });

  it('hash is lower-case hex and names the algorithm on the wire', async () => {
    const { agent, client } = await start({
      handlers: { 18: (_args, reply) => reply.response(new Out().string('ABCDEF0123').done()) },
    });
    assert.equal(await client.hash('/f', 'md5'), 'abcdef0123');
    const data = agent.frames(2, 18)[0]!.data.subarray(4);
    assert.ok(data.toString('latin1').endsWith('\x03md5'));
  });

  it('GetBaseWorkingDirectory and GetEnvironmentVariable', async () => {
    const { client } = await start({
      handlers: {
        1: (_a, reply) => reply.response(new Out().string('/srv/base').done()),
        43: (args, reply) => {
          const name = args.string();
          reply.response(new Out().nullableString(name === 'HOME' ? '/root' : null).done());
        },
      },
    });
    assert.equal(await client.getBaseWorkingDirectory(), '/srv/base');
    assert.equal(await client.getEnvironmentVariable('HOME'), '/root');
    assert.equal(await client.getEnvironmentVariable('NOPE'), null);
  });

  it('an unknown error kind is a generic failure showing message and detail; known kinds map to codes', async () => {
    const { client } = await start({
      handlers: {
        2: (args, reply) => {
          const path = args.string();
          if (path === 'odd') reply.error('QuotaGone', 'the quota is gone', 'EDQUOT');
          else reply.error('LimitExceeded', 'too many handles', null);
        },
      },
    });
    await assert.rejects(client.exists('odd'), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.code, 'RemoteFailure');
      assert.equal(err.kind, 'QuotaGone');
      assert.equal(err.detail, 'EDQUOT');
      assert.match(err.message, /the quota is gone.*EDQUOT/);
      return true;
    });
    await assert.rejects(client.exists('x'), (err: unknown) => {
      assert.ok(isRemoteError(err, 'LimitExceeded'));
      assert.equal((err as RemoteError).retryable, true);
      return true;
    });
  });

  it('a process killed by a signal reports code null and the signal name (wire: −1 + name)', async () => {
    const { client } = await start({
      handlers: {
        40: (_args, reply) => {
          reply.response(new Out().i32(777).done());
          reply.event(1, new Out().bytes(Buffer.from('out')).done());
          reply.event(3, new Out().i32(-1).nullableString('SIGKILL').done());
        },
      },
    });
    const r = await client.exec('/bin/true', [], { encoding: 'utf8' });
    assert.equal(r.stdout, 'out');
    assert.equal(r.code, null);
    assert.equal(r.signal, 'SIGKILL');
  });

  it('tokens are unique across product requests and reconnects; abort sends Cancel without waiting', async () => {
    let held: (() => void) | null = null;
    const { agent, client } = await start({
      handlers: {
        3: (_args, reply) => reply.response(new Out().bool(true).done()),
        12: (_args, reply) => {
          // Answers only once cancelled (as the contract says: Error Canceled).
          held = () => reply.error('Canceled', 'canceled');
        },
      },
    });
    await client.dirExists('/a');
    const ac = new AbortController();
    const read = client.readFile('/slow', { signal: ac.signal });
    while (agent.frames(2, 12).length === 0) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await assert.rejects(read, { name: 'AbortError' });
    while (agent.frames(2, 99).length === 0) await new Promise((r) => setTimeout(r, 5));
    const cancel = agent.frames(2, 99)[0]!;
    assert.equal(cancel.data.readInt32LE(4), agent.frames(2, 12)[0]!.token, 'Cancel names the read');
    (held as (() => void) | null)?.();
    const r = await client.reconnect();
    assert.equal(r.resumed, true);
    await client.dirExists('/b');
    const tokens = agent.received.filter((f) => f.token !== null).map((f) => f.token);
    assert.equal(new Set(tokens).size, tokens.length, `tokens repeat: ${tokens.join(',')}`);
    // After the resume the SDK's first frame is a Ping (so buffered events flow).
    const meta = metaOrder(agent);
    assert.equal(meta[meta.length - 1], 3);
  });
});
