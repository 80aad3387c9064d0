/**
 * Meta commands (PROTOCOL.md §5.1) against a real `outpost serve` process in
 * mode aes: each command's reply, MetaError for failures, replies in order
 * (UpdateAgent has none on success and is confirmed by a Ping behind it),
 * the UpdateAgent storage layout, CloseSession.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { access, readdir, readFile, stat } from 'node:fs/promises';
import { arch, hostname, release } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { instanceName } from '../../src/agent/meta.js';
import {
  AgentType,
  encodeClientMessage,
  encodeMetaRequest,
  META_COMMANDS,
  PROTOCOL_VERSION,
  parseVersion,
  type UpdateFile,
} from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';

const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** .NET ticks for a Date. */
const ticks = (d: Date) => BigInt(d.getTime()) * 10_000n + 621_355_968_000_000_000n;

function file(
  fileName: string,
  contents: string | Buffer,
  when = new Date('2024-05-06T07:08:09Z'),
): UpdateFile {
  return { fileName, lastWriteUtc: ticks(when), contents: Buffer.from(contents) };
}

describe('meta commands (mode aes)', () => {
  let agent: AgentProcess;
  let client: TestClient;
  let sessionId: number;
  let version: number;

  before(async () => {
    agent = await startAgentProcess({ mode: 'aes', logFile: 'logs/agent.log' });
    const c = await agent.connect();
    sessionId = c.sessionId;
    version = c.version;
    client = new TestClient(c.connection);
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  it('grants a positive session ID and packs the package version in the handshake', () => {
    assert.ok(Number.isInteger(sessionId) && sessionId > 0);
    assert.equal(version, parseVersion(pkg.version));
  });

  it('Ping echoes its token under code 3', async () => {
    const r = await client.request(AgentType.Meta, 'Ping', { token: -123456 });
    assert.equal(r.kind, 'meta');
    if (r.kind === 'meta') {
      assert.equal(r.command, META_COMMANDS.Ping.code);
      assert.equal(r.body.readInt32LE(0), -123456);
    }
  });

  it('GetAgentInfo describes the agent', async () => {
    const info = await client.call(AgentType.Meta, 'GetAgentInfo', {});
    assert.equal(info.product, 'Outpost');
    assert.equal(info.version, pkg.version);
    assert.equal(info.protocolVersion, PROTOCOL_VERSION);
    assert.equal(info.hostName, hostname());
    assert.equal(info.platform, process.platform);
    assert.equal(info.osRelease, release());
    assert.equal(info.arch, arch());
    assert.equal(info.processId, agent.child.pid);
    assert.ok(info.uptimeMs >= 0);
    assert.deepEqual([...info.supportedAgentTypes], [0, 1, 2, 3]);
    assert.equal(info.encryptionMode, 2);
  });

  it('GetAgentRootPath returns and creates each product root under the config dir', async () => {
    for (const [type, name] of [
      [AgentType.Otter, 'Otter'],
      [AgentType.BuildMaster, 'BuildMaster'],
      [AgentType.Hedgehog, 'Hedgehog'],
    ] as const) {
      const { path } = await client.call(AgentType.Meta, 'GetAgentRootPath', { agentType: type });
      assert.equal(path, join(agent.dir, 'state', name));
      assert.ok((await stat(path)).isDirectory());
    }
  });

  it('GetAgentRootPath of a non-product type is a MetaError carrying its command', async () => {
    const r = await client.request(AgentType.Meta, 'GetAgentRootPath', { agentType: 0 });
    assert.equal(r.kind, 'meta-error');
    if (r.kind === 'meta-error') {
      assert.equal(r.requestCommand, META_COMMANDS.GetAgentRootPath.code);
      assert.match(r.message, /unknown agent type 0/);
    }
  });

  it('UpdateAgent stores binaries and extensions under ExtensionCachePath/<instance>/<Product>/, no reply of its own', async () => {
    const big = Buffer.alloc(4 << 20, 7);
    const r = await client.request(AgentType.Meta, 'UpdateAgent', {
      targetType: AgentType.BuildMaster,
      binaries: [file('Agent.dll', 'v2'), file('big.bin', big)],
      extensions: [file('InedoCore.upack', 'PK…')],
    });
    // The helper resolves an UpdateAgent when the Ping sent behind it comes back.
    assert.equal(r.kind, 'meta');
    const base = join(agent.dir, 'state', 'ExtensionCache', '127.0.0.1', 'BuildMaster');
    assert.deepEqual((await readdir(join(base, 'binaries'))).sort(), ['Agent.dll', 'big.bin']);
    assert.deepEqual(await readdir(join(base, 'extensions')), ['InedoCore.upack']);
    assert.equal(await readFile(join(base, 'binaries', 'Agent.dll'), 'utf8'), 'v2');
    assert.deepEqual(await readFile(join(base, 'binaries', 'big.bin')), big);
    const mtime = (await stat(join(base, 'extensions', 'InedoCore.upack'))).mtime;
    assert.equal(mtime.toISOString(), '2024-05-06T07:08:09.000Z', 'lastWriteUtc is kept');
    assert.deepEqual(
      (await readdir(join(base, 'binaries'))).filter((n) => n.startsWith('.outpost-tmp')),
      [],
      'no temp file left',
    );
  });

  it('meta replies are in order: UpdateAgent then Ping — the Ping reply comes after the files are stored', async () => {
    const c = await agent.connect();
    const t = new TestClient(c.connection);
    const big = Buffer.alloc(32 << 20, 1);
    const path = join(agent.dir, 'state', 'ExtensionCache', '127.0.0.1', 'Otter', 'binaries', 'late.bin');
    c.connection.send(
      encodeMetaRequest('UpdateAgent', {
        targetType: AgentType.Otter,
        binaries: [file('late.bin', big)],
        extensions: [],
      }),
    );
    const r = await t.sendRawMeta(encodeMetaRequest('Ping', { token: 6 }), META_COMMANDS.Ping.code, 30_000);
    const storedWhenAnswered = existsSync(path);
    assert.equal(r.kind, 'meta');
    if (r.kind === 'meta') assert.equal(r.body.readInt32LE(0), 6);
    assert.equal(storedWhenAnswered, true, 'the file was stored before the Ping was answered');
    assert.equal(t.log.length, 1, 'nothing was sent for the UpdateAgent itself');
    t.close();
  });

  it('a failed UpdateAgent is MetaError(1), before the reply of the Ping behind it; nothing is written', async () => {
    for (const bad of ['../evil', 'a/b', 'a\\b', '/etc/passwd', '..', 'C:x']) {
      const r = await client.request(AgentType.Meta, 'UpdateAgent', {
        targetType: AgentType.Otter,
        binaries: [file('fine.txt', 'x')],
        extensions: [file(bad, 'x')],
      });
      assert.equal(r.kind, 'meta-error', bad);
      if (r.kind === 'meta-error') {
        assert.equal(r.requestCommand, 1);
        assert.match(r.message, /^UpdateAgent: extensions: file name/);
      }
    }
    // On the wire: each MetaError(1) came before the reply of the Ping sent right behind it.
    const kinds = client.log.slice(-12).map((x) => x.kind);
    assert.deepEqual(kinds, Array.from({ length: 6 }, () => ['meta-error', 'meta']).flat());
    await assert.rejects(
      access(join(agent.dir, 'state', 'ExtensionCache', '127.0.0.1', 'Otter', 'binaries', 'fine.txt')),
      'nothing of a refused update is written',
    );
    const t = await client.request(AgentType.Meta, 'UpdateAgent', {
      targetType: 0,
      binaries: [],
      extensions: [],
    });
    assert.equal(t.kind, 'meta-error');
    if (t.kind === 'meta-error') assert.match(t.message, /unknown target type 0/);
    // The swallowed Ping replies did not shift the order: the next request gets its own reply.
    await client.ping();
  });

  it('an unknown meta command and an unknown agent type are MetaErrors; the connection stays usable', async () => {
    const u = await client.sendRawMeta(encodeClientMessage(AgentType.Meta, 77, Buffer.alloc(0)), 77);
    assert.equal(u.kind, 'meta-error');
    if (u.kind === 'meta-error')
      assert.deepEqual([u.requestCommand, u.message], [77, 'unknown meta command 77']);
    const a = await client.sendRawMeta(encodeClientMessage(42, 13, Buffer.alloc(8)), 13);
    assert.equal(a.kind, 'meta-error');
    if (a.kind === 'meta-error') {
      assert.equal(a.requestCommand, 13);
      assert.match(a.message, /unknown agent type 42/);
    }
    await client.ping();
  });

  it('many pipelined Pings are all answered, in order', async () => {
    const tokens = Array.from({ length: 200 }, (_, i) => i * 7 - 300);
    const replies = await Promise.all(tokens.map((token) => client.call(AgentType.Meta, 'Ping', { token })));
    assert.deepEqual(
      replies.map((r) => r.token),
      tokens,
    );
  });

  it('logs to LogFile as well as stdout, never the key', async () => {
    const log = await readFile(join(agent.dir, 'logs', 'agent.log'), 'utf8');
    assert.match(log, /"msg":"listening"/);
    assert.match(log, /"msg":"connection opened a session"/);
    assert.match(log, /"remote":"127\.0\.0\.1"/);
    const key = agent.key!.toString('hex');
    assert.ok(!log.includes(key) && !agent.stdout().includes(key), 'the key is never logged');
  });

  it('CloseSession replies 5 with no data, then closes the connection and ends the session', async () => {
    const c = await agent.connect();
    const t = new TestClient(c.connection);
    const r = await t.request(AgentType.Meta, 'CloseSession', {});
    assert.equal(r.kind, 'meta');
    if (r.kind === 'meta') {
      assert.equal(r.command, 5);
      assert.equal(r.body.length, 0);
    }
    const err = await t.closed;
    assert.equal(err, undefined, 'closed gracefully');
    const again = await agent.connect({ sessionId: c.sessionId });
    assert.notEqual(again.sessionId, c.sessionId, 'the closed session cannot be resumed');
    again.connection.close();
    await client.ping();
  });
});

describe('UpdateAgent instance names', () => {
  it('dotted IPv4, IPv4-mapped IPv6 as IPv4, compressed IPv6 with - for :', () => {
    assert.equal(instanceName('10.1.2.3'), '10.1.2.3');
    assert.equal(instanceName('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(instanceName('::FFFF:7f00:1'), '127.0.0.1');
    assert.equal(instanceName('::1'), '--1');
    assert.equal(instanceName('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001-db8--1');
    assert.equal(instanceName('FE80::1:2'), 'fe80--1-2');
  });
});
