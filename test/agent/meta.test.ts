/**
 * Meta commands and request-level errors against a real `outpost serve`
 * process in mode aes.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { arch, hostname } from 'node:os';
import { join, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AgentType,
  ErrorKind,
  encodeRequest,
  encodeRequestRaw,
  META_COMMANDS,
  PROTOCOL_VERSION,
} from '../../src/protocol/index.js';
import { type AgentProcess, startAgentProcess, TestClient } from '../helpers/agent.js';

const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('meta commands (mode aes)', () => {
  let agent: AgentProcess;
  let client: TestClient;
  let sessionId: number;

  before(async () => {
    agent = await startAgentProcess({ mode: 'aes', maxMessageSize: 1 << 20, logFile: 'logs/agent.log' });
    const c = await agent.connect();
    sessionId = c.sessionId;
    client = new TestClient(c.connection);
  });
  after(async () => {
    client?.close();
    await agent?.stop();
  });

  it('grants a positive session ID in mode aes', () => {
    assert.ok(Number.isInteger(sessionId) && sessionId > 0);
  });

  it('Ping answers with an empty response', async () => {
    const r = await client.request(AgentType.Meta, 'Ping', {});
    assert.equal(r.kind, 'response');
    assert.equal(r.agentType, AgentType.Meta);
    if (r.kind === 'response') assert.equal(r.body.length, 0);
  });

  it('GetAgentInfo describes the agent', async () => {
    const info = await client.call(AgentType.Meta, 'GetAgentInfo', {});
    assert.equal(info.agentVersion, pkg.version);
    assert.equal(info.protocolVersion, PROTOCOL_VERSION);
    assert.equal(info.hostname, hostname());
    assert.equal(info.architecture, arch());
    assert.equal(info.directorySeparator, sep);
    assert.equal(info.maxMessageSize, 1 << 20);
    assert.ok(info.processorCount >= 1);
    assert.ok(info.osDescription.length > 0);
  });

  it('GetAgentRootPath returns and creates each product root under the config dir', async () => {
    const seen = new Set<string>();
    for (const [type, name] of [
      [AgentType.BuildMaster, 'BuildMaster'],
      [AgentType.Otter, 'Otter'],
      [AgentType.Hedgehog, 'Hedgehog'],
    ] as const) {
      const { path } = await client.call(AgentType.Meta, 'GetAgentRootPath', { agentType: type });
      assert.equal(path, join(agent.dir, 'state', name));
      assert.ok((await stat(path)).isDirectory());
      seen.add(path);
    }
    assert.equal(seen.size, 3);
  });

  it('GetAgentRootPath of a non-product type is UnknownAgentType', async () => {
    for (const t of [AgentType.Meta, 7, 255]) {
      const r = await client.request(AgentType.Meta, 'GetAgentRootPath', { agentType: t });
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') {
        assert.equal(r.errorKind, ErrorKind.UnknownAgentType);
        assert.match(r.message, new RegExp(`unknown agent type ${t}`));
      }
    }
  });

  it('UpdateAgent stores files atomically under ExtensionCachePath/<instance>/<Product>/', async () => {
    const files = [
      { name: 'Extension.dll', data: Buffer.from('binary\0data') },
      { name: '.hidden-ok', data: Buffer.alloc(300_000, 7) },
      { name: 'empty.txt', data: Buffer.alloc(0) },
    ];
    await client.call(AgentType.Meta, 'UpdateAgent', { instance: 'prod-1', product: AgentType.Otter, files });
    const dir = join(agent.dir, 'state', 'ExtensionCache', 'prod-1', 'Otter');
    for (const f of files) assert.deepEqual(await readFile(join(dir, f.name)), f.data);
    assert.deepEqual(
      (await readdir(dir)).sort(),
      files.map((f) => f.name).sort(),
      'no temp files are left behind',
    );
    // Replacing a file works.
    await client.call(AgentType.Meta, 'UpdateAgent', {
      instance: 'prod-1',
      product: AgentType.Otter,
      files: [{ name: 'Extension.dll', data: Buffer.from('v2') }],
    });
    assert.equal(await readFile(join(dir, 'Extension.dll'), 'utf8'), 'v2');
  });

  it('UpdateAgent refuses unsafe names with InvalidArgument and writes nothing', async () => {
    const cases: [instance: string, name: string][] = [
      ['ok', ''],
      ['ok', '..'],
      ['ok', '.'],
      ['ok', '../escape'],
      ['ok', 'a/b'],
      ['ok', 'a\\b'],
      ['ok', '/etc/passwd'],
      ['ok', 'C:evil'],
      ['ok', 'nul\0byte'],
      ['ok', 'trailing.'],
      ['ok', 'CON'],
      ['ok', 'x'.repeat(256)],
      ['..', 'fine.txt'],
      ['', 'fine.txt'],
      ['a/b', 'fine.txt'],
    ];
    for (const [instance, name] of cases) {
      const r = await client.request(AgentType.Meta, 'UpdateAgent', {
        instance,
        product: AgentType.BuildMaster,
        files: [
          { name: 'good.txt', data: Buffer.from('x') },
          { name, data: Buffer.from('y') },
        ],
      });
      assert.equal(r.kind, 'error', `${JSON.stringify([instance, name])} must be refused`);
      if (r.kind === 'error') assert.equal(r.errorKind, ErrorKind.InvalidArgument, r.message);
    }
    const dup = await client.request(AgentType.Meta, 'UpdateAgent', {
      instance: 'ok',
      product: AgentType.BuildMaster,
      files: [
        { name: 'same.txt', data: Buffer.from('1') },
        { name: 'SAME.txt', data: Buffer.from('2') },
      ],
    });
    assert.equal(dup.kind, 'error');
    const cache = join(agent.dir, 'state', 'ExtensionCache');
    const entries = await readdir(cache);
    assert.deepEqual(entries, ['prod-1'], 'nothing was written for refused requests');
  });

  it('UpdateAgent with a non-product type is UnknownAgentType', async () => {
    const r = await client.request(AgentType.Meta, 'UpdateAgent', { instance: 'i', product: 9, files: [] });
    assert.equal(r.kind, 'error');
    if (r.kind === 'error') assert.equal(r.errorKind, ErrorKind.UnknownAgentType);
  });

  it('an unknown meta command is UnknownCommand and the connection stays usable', async () => {
    const token = client.token();
    const r = await client.sendRaw(encodeRequestRaw(AgentType.Meta, token, 77, Buffer.alloc(0)), token);
    assert.equal(r.kind, 'error');
    if (r.kind === 'error') {
      assert.equal(r.errorKind, ErrorKind.UnknownCommand);
      assert.equal(r.token, token);
      assert.match(r.message, /77/);
    }
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
  });

  it('an unknown agent type is UnknownAgentType and the connection stays usable', async () => {
    const token = client.token();
    const r = await client.sendRaw(
      encodeRequestRaw(4, token, META_COMMANDS.Ping.code, Buffer.alloc(0)),
      token,
    );
    assert.equal(r.kind, 'error');
    if (r.kind === 'error') {
      assert.equal(r.errorKind, ErrorKind.UnknownAgentType);
      assert.equal(r.agentType, 4);
    }
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
  });

  it('arguments that do not decode are InvalidArgument and the connection stays usable', async () => {
    for (const body of [Buffer.alloc(0), Buffer.from([1, 2]), Buffer.from([1, 0xff])]) {
      const token = client.token();
      const r = await client.sendRaw(
        encodeRequestRaw(AgentType.Meta, token, META_COMMANDS.GetAgentRootPath.code, body),
        token,
      );
      assert.equal(r.kind, 'error');
      if (r.kind === 'error') assert.equal(r.errorKind, ErrorKind.InvalidArgument, r.message);
    }
    // Trailing bytes after a Ping are also refused.
    const token = client.token();
    const r = await client.sendRaw(
      encodeRequestRaw(AgentType.Meta, token, META_COMMANDS.Ping.code, Buffer.from([0])),
      token,
    );
    assert.equal(r.kind, 'error');
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
  });

  it('many pipelined requests are all answered, in any order, by token', async () => {
    const tokens = Array.from({ length: 500 }, () => client.token());
    const replies = await Promise.all(
      tokens.map((t, i) =>
        client.sendRaw(
          i % 2
            ? encodeRequest(AgentType.Meta, t, 'Ping', {})
            : encodeRequest(AgentType.Meta, t, 'GetAgentRootPath', { agentType: AgentType.BuildMaster }),
          t,
        ),
      ),
    );
    assert.equal(replies.length, 500);
    for (const [i, r] of replies.entries()) {
      assert.equal(r.kind, 'response');
      assert.equal(r.token, tokens[i]);
    }
  });

  it('a hello with the session ID resumes the session; an unknown ID gets a new one', async () => {
    const again = await agent.connect({ sessionId });
    assert.equal(again.sessionId, sessionId);
    again.connection.close();
    const fresh = await agent.connect({ sessionId: 12345 });
    assert.notEqual(fresh.sessionId, 12345);
    assert.ok(fresh.sessionId > 0);
    fresh.connection.close();
  });

  it('a message too short for a request header closes that connection only', async () => {
    const c = await agent.connect();
    const t = new TestClient(c.connection);
    c.connection.send(Buffer.from([0, 1, 2]));
    await t.closed;
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
  });

  it('logs to LogFile as well as stdout, never the key', async () => {
    const log = await readFile(join(agent.dir, 'logs', 'agent.log'), 'utf8');
    assert.match(log, /"msg":"listening"/);
    assert.match(log, /"msg":"connection opened a session"/);
    assert.match(log, /"remote":"127\.0\.0\.1"/);
    const key = agent.key!.toString('hex');
    assert.ok(!log.includes(key) && !agent.stdout().includes(key), 'the key is never logged');
  });

  it('CloseSession replies, then closes the connection and ends the session', async () => {
    const c = await agent.connect();
    const t = new TestClient(c.connection);
    const r = await t.request(AgentType.Meta, 'CloseSession', {});
    assert.equal(r.kind, 'response');
    const err = await t.closed;
    assert.equal(err, undefined, 'closed gracefully');
    const again = await agent.connect({ sessionId: c.sessionId });
    assert.notEqual(again.sessionId, c.sessionId, 'the closed session cannot be resumed');
    again.connection.close();
    assert.equal((await client.request(AgentType.Meta, 'Ping', {})).kind, 'response');
  });
});
