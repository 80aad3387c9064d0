/**
 * `outpost hub` end to end. To stay inside the test-time budget the hub
 * (startHub, what `outpost hub` runs) and the 50 agents (startAgent; three
 * with real host processes, the rest meta-only) run in this process; the
 * certificate comes from `hub init`, web01's key from `hub key` and its
 * config from `init --outbound`, called in-process too. Client commands
 * are real CLI processes reaching agents by name through the hub socket
 * (`outpost agents`, `exec NAME`, `exec --hosts`). A fan-out goes across
 * all 50 through the hub's splices; then the hub is restarted while the
 * agents back off, and they come back.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { HostRouter } from '../../src/agent/host-router.js';
import { type AgentHandle, silentLogger, startAgent } from '../../src/agent/index.js';
import { connectionSettings, parseTarget, viaHub } from '../../src/cli/connection.js';
import { hubInit, hubKey, type RunningHub, startHub } from '../../src/cli/hub.js';
import { hubLink } from '../../src/cli/hub-client.js';
import { init } from '../../src/cli/init.js';
import { AgentClient } from '../../src/index.js';
import { connectLocal, readJsonLine, writeJsonLine } from '../../src/transport/index.js';
import { until } from '../agent/e2e-helpers.js';
import { tempDir } from '../helpers/agent.js';
import { cli, closedPort } from './helpers.js';

const HOST = '127.0.0.1';
const META_ONLY = 47;
const FAST = { backoff: { baseMs: 50, maxMs: 400 } };
let dir: string;
let hubDir: string;
let socket: string;
let port: number;
let thumbprint: string;
let hub: RunningHub | null = null;
const agents: AgentHandle[] = [];

/** Every CLI run gets HOME inside the temp directory: nothing default lands in the real ~/.outpost. */
const env = (extra: NodeJS.ProcessEnv = {}) => ({ HOME: dir, XDG_RUNTIME_DIR: '', ...extra });

async function startTheHub(): Promise<void> {
  hub = await startHub({ dir: hubDir, listen: `${HOST}:${port}`, socket });
}

async function stopHub(): Promise<void> {
  await hub?.close();
  hub = null;
}

interface Listing {
  agents: { name: string; version: string | null; idle: number; address: string }[];
  configured: string[];
}

async function hubAgents(): Promise<Listing> {
  const s = await connectLocal(socket);
  writeJsonLine(s, { op: 'agents' });
  const r = await readJsonLine<Listing>(s);
  s.destroy();
  return r;
}

async function waitForAll(pred: (l: Listing) => boolean): Promise<Listing | null> {
  let l: Listing | null = null;
  for (let i = 0; i < 300; i++) {
    l = await hubAgents().catch(() => null);
    if (l && pred(l)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return l;
}

async function agentFrom(configXml: string, name: string, router: boolean): Promise<AgentHandle> {
  const config = await parseConfig(configXml, join(dir, `${name}.config`));
  const logger = silentLogger();
  return startAgent(config, logger, {
    outbound: FAST,
    ...(router ? { router: new HostRouter({ config, logger, spareHosts: 0 }) } : {}),
  });
}

// Generous deadlines: 50 handshakes at once on a loaded 2-core machine.
const link = (name: string) =>
  AgentClient.connect({
    host: name,
    timeoutMs: 60_000,
    link: (signal) => hubLink(name, { socketPath: socket, timeoutMs: 60_000, ...(signal ? { signal } : {}) }),
  });

before(async () => {
  dir = await tempDir('outpost-hub-');
  hubDir = join(dir, 'hub');
  socket = join(dir, 'run', 'hub.sock');
  port = await closedPort();
  let printed = '';
  thumbprint = await hubInit({ dir: hubDir, host: [HOST] }, { out: (t) => (printed += t), err: () => {} });
  assert.equal(printed.trim(), thumbprint);
  assert.match(thumbprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

  // web01 is set up the way docs/OUTBOUND.md says: hub key, then init --outbound on the agent.
  let line = '';
  const serverKey = await hubKey('web01', { dir: hubDir }, { out: (t) => (line += t), err: () => {} });
  assert.ok(line.includes(`--server-key ${serverKey} --thumbprint ${thumbprint}`), line);
  const configPath = join(dir, 'web01', 'InedoAgent.config');
  await init({ outbound: `${HOST}:${port}`, serverKey, thumbprint, configPath, out: () => {} });
  const web01 = await loadConfig(configPath);
  assert.equal(web01.listener.enabled, false);
  assert.equal(web01.connections.servers[0]!.label, `${HOST}:${port}`);

  // The other 49 keys go straight into the agents file ("NAME KEY" lines).
  const names = [
    'web02',
    'web03',
    ...Array.from({ length: META_ONLY }, (_, i) => `n${String(i + 4).padStart(2, '0')}`),
  ];
  await appendFile(join(hubDir, 'agents'), names.map((n) => `${n} key-${n}\n`).join(''));
  await startTheHub();

  const root = join(dir, 'root');
  const routed = (name: string, key: string) =>
    renderConfigXml({
      mode: 'none',
      listenerEnabled: false,
      allowedRoots: [root],
      rootPaths: { BuildMaster: join(root, name) },
      servers: [{ host: `${HOST}:${port}`, key, thumbprint }],
    });
  agents.push(await agentFrom(await readFile(configPath, 'utf8'), 'web01', true));
  for (const n of names) agents.push(await agentFrom(routed(n, `key-${n}`), n, n.startsWith('web')));
});

after(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await stopHub();
  await rm(dir, { recursive: true, force: true });
});

describe('outpost hub', () => {
  it('50 agents dial in; `outpost agents` lists them with address and version', async () => {
    const listing = await waitForAll(
      (l) => l.agents.length === 50 && l.agents.every((a) => a.version !== null),
    );
    assert.equal(listing?.agents.length, 50);
    assert.equal(listing?.configured.length, 50);
    const r = await cli(['agents', '--socket', socket], env());
    assert.equal(r.code, 0, r.stderr);
    const web01 = r.stdout.split('\n').find((l) => l.startsWith('web01 '))!;
    assert.ok(web01.includes(HOST), web01);
    assert.match(web01, /\d+\.\d+\.\d+\.\d+/, 'a version');
    assert.match(web01, /ready/);
  });

  it('client commands reach an agent by name: exec, and a --hosts fan-out', async () => {
    const hubEnv = env({ OUTPOST_HUB: socket });
    const exec = await cli(['exec', 'web01', '--', 'uname', '-a'], hubEnv);
    assert.equal(exec.code, 0, exec.stderr);
    assert.match(exec.stdout, /Linux|Darwin/);
    const hosts = join(dir, 'hosts.txt');
    await writeFile(hosts, 'web01\nweb02\nweb03\n');
    const fan = await cli(['exec', '--hosts', hosts, '--', 'echo', 'hi'], hubEnv);
    assert.equal(fan.code, 0, fan.stderr + fan.stdout);
    assert.equal(fan.stdout.match(/hi/g)?.length, 3, fan.stdout);
  });

  it('names: a hub name goes through the hub; an unknown name, an IP or an explicit port is dialed', async () => {
    const settings = await connectionSettings({}, {});
    const e = env({ OUTPOST_HUB: socket });
    assert.ok(await viaHub(parseTarget('web01'), settings, undefined, e));
    assert.equal(await viaHub(parseTarget('nosuchagent'), settings, undefined, e), null);
    assert.equal(await viaHub(parseTarget('web01:4000'), settings, undefined, e), null);
    assert.equal(await viaHub(parseTarget('127.0.0.1'), settings, undefined, e), null);
    const none = env({ OUTPOST_HUB: join(dir, 'none.sock') });
    assert.equal(await viaHub(parseTarget('web01'), settings, undefined, none), null);
  });

  it('init --outbound refuses what the agent could not use, naming the option, and writes nothing', async () => {
    const configPath = join(dir, 'bad', 'InedoAgent.config');
    await assert.rejects(
      init({ outbound: 'bad host', serverKey: 'k', thumbprint, configPath, out: () => {} }),
      /^UsageError: --outbound: /,
    );
    await assert.rejects(
      init({ outbound: HOST, serverKey: 'k', thumbprint: 'abc', configPath, out: () => {} }),
      /^UsageError: --thumbprint: /,
    );
    await assert.rejects(init({ outbound: HOST, configPath, out: () => {} }), /--server-key/);
    await assert.rejects(readFile(configPath), { code: 'ENOENT' });
  });

  it('a fan-out across all 50 agents through the hub', async () => {
    const listing = await hubAgents();
    const clients = await Promise.all(listing.configured.map((name) => link(name)));
    const infos = await Promise.all(clients.map((c) => c.info()));
    assert.equal(infos.length, 50);
    assert.equal(new Set(clients.map((c) => c.sessionId)).size, 50, 'one session each');
    await Promise.all(clients.map((c) => c.close()));
  });

  it('the hub restarts while the agents back off; they come back', async () => {
    await stopHub();
    await until(
      () => agents.every((a) => a.outboundStatus()[0]!.failures >= 2),
      20_000,
      'agents backing off',
    );
    await startTheHub();
    const l = await waitForAll((x) => x.agents.length === 50);
    assert.equal(l?.agents.length, 50, JSON.stringify(agents.map((a) => a.outboundStatus()[0])));
    const c = await link('web01');
    const r = await c.exec('/bin/echo', ['back'], { encoding: 'utf8' });
    assert.equal(r.stdout, 'back\n');
    await c.close();
  });
});
