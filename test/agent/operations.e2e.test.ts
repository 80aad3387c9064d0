/**
 * Running it as a service (issue 16), against one real `outpost serve`
 * process in mode ssl: the control socket (status, reload), SIGHUP, a
 * reload with a new certificate, AllowedAddresses and AllowedRoots that
 * drops no session (a process keeps streaming on the same connection, the
 * session's running host gets the new AllowedRoots), a config with an error
 * refused whole, metrics scraped over real HTTP, the audit log (every
 * mutation once, never contents), and the clean environment of remote
 * processes.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { renderConfigXml } from '../../src/agent/config.js';
import { requestControl } from '../../src/agent/control.js';
import type { AgentStatus } from '../../src/agent/status.js';
import { askAgent } from '../../src/cli/control-target.js';
import type { CliError } from '../../src/cli/errors.js';
import { formatStatus } from '../../src/cli/status.js';
import { AgentType, encodeProductRequest } from '../../src/protocol/index.js';
import {
  type AgentProcess,
  makeTestCertificate,
  type ReplyError,
  rawExchange,
  runCli,
  startAgentProcess,
  type TestCertificate,
  TestClient,
  tempDir,
} from '../helpers/agent.js';
import { exitedOf, startProcess, stdoutText, until } from './e2e-helpers.js';

const OTTER = AgentType.Otter;

function scrape(port: number): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => {
        body += d;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      );
    }).on('error', reject);
  });
}

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(body: string, line: string): number | undefined {
  const found = body.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('operations: status, reload, metrics, audit (real agent, mode ssl)', () => {
  let dir: string;
  let agent: AgentProcess;
  let second: TestCertificate;
  let socket: string;
  let metricsPort: number;
  const audit = () => join(dir, 'logs', 'audit.log');
  const data = () => join(dir, 'data');
  const data2 = () => join(dir, 'data2');
  const configFor = (cert: TestCertificate, o: { allowed: string; roots: string[]; port?: string }) =>
    renderConfigXml({
      mode: 'ssl',
      certificateFile: cert.certFile,
      keyFile: cert.keyFile,
      address: '127.0.0.1',
      port: 0,
      allowedAddresses: [o.allowed],
      allowedRoots: o.roots,
      extraXml:
        `  <Metrics Address="127.0.0.1:${o.port ?? '0'}"/>\n` +
        `  <AuditLogFile>${audit()}</AuditLogFile>\n` +
        `  <ControlSocket>${join(dir, 'run', 'control.sock')}</ControlSocket>\n`,
    });

  before(async () => {
    dir = await tempDir('outpost-ops-');
    await mkdir(data());
    await mkdir(data2());
    const first = await makeTestCertificate(dir, 'first');
    second = await makeTestCertificate(dir, 'second');
    await writeFile(
      join(dir, 'InedoAgent.config'),
      configFor(first, { allowed: '127.0.0.0/8', roots: [data()] }),
    );
    agent = await startAgentProcess({
      mode: 'ssl',
      dir,
      configFile: join(dir, 'InedoAgent.config'),
      connectWith: { thumbprint: first.thumbprint },
      env: {
        ...process.env,
        // What `npm start` would inject: none of it may reach a remote process.
        npm_lifecycle_event: 'start',
        npm_config_cache: '/nonexistent/npm-cache',
        INIT_CWD: '/nonexistent/init-cwd',
        PATH: `/nonexistent/project/node_modules/.bin:${process.env.PATH ?? '/usr/bin:/bin'}`,
      },
    });
    socket = join(dir, 'run', 'control.sock');
    metricsPort = (await agent.waitForLog((r) => r.msg === 'metrics at /metrics')).port as number;
  });
  after(async () => {
    await agent?.stop();
  });

  test('status on the owner-only control socket: listener, the session, its host and process, rejections', async () => {
    const st = await stat(socket);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'run'))).mode & 0o777, 0o700);
    const c = new TestClient((await agent.connect()).connection);
    const { pid } = await startProcess(c, OTTER, 7, 'sleep', ['30'], data());
    const answer = await requestControl(socket, { command: 'status' });
    assert.ok(answer.ok && 'status' in answer, JSON.stringify(answer));
    const s = answer.status;
    assert.equal(s.listener.mode, 'ssl');
    assert.equal(s.listener.port, agent.port);
    assert.equal(s.configPath, join(dir, 'InedoAgent.config'));
    assert.ok(s.uptimeMs >= 0);
    assert.deepEqual(s.outbound, []);
    const mine = s.sessions.find((x) => x.processes.some((p) => p.pid === pid));
    assert.ok(mine, JSON.stringify(s.sessions));
    assert.equal(mine.principal, 'addr:127.0.0.1');
    assert.equal(mine.state, 'attached');
    assert.deepEqual(mine.remotes, ['127.0.0.1']);
    assert.equal(mine.hosts[0]?.product, 'Otter');
    assert.ok(s.hostProcesses >= 1);
    await c.call(OTTER, 'TerminateProcess', { processToken: 7, entireTree: true });
    c.close();
  });

  test('`outpost status --json` through the CLI; the readable form; no agent on a socket is exit 2', async () => {
    const json = await runCli(['status', '--socket', socket, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const st = JSON.parse(json.stdout) as AgentStatus;
    assert.equal(st.listener.port, agent.port);
    assert.match(formatStatus(st), new RegExp(`listener: +127\\.0\\.0\\.1:${agent.port}, mode ssl`));
    await assert.rejects(
      askAgent({ socket: join(dir, 'nope.sock') }, { command: 'status' }),
      (e: CliError) => {
        assert.equal(e.exitCode, 2);
        assert.match(e.message, /nothing is listening there; is the agent running/);
        return true;
      },
    );
  });

  test('reload with a new certificate, AllowedAddresses and AllowedRoots drops no session', async () => {
    const c = new TestClient((await agent.connect()).connection);
    const script = 'i=0; while [ $i -lt 400 ]; do echo tick$i; i=$((i+1)); sleep 0.05; done';
    const { reply } = await startProcess(c, OTTER, 11, 'sh', ['-c', script], data());
    assert.equal(reply.kind, 'response');
    await until(() => stdoutText(c.events.get(11)).includes('tick2'), 15_000, 'the process streams');
    // The session's host is running with the old AllowedRoots.
    await c.call(OTTER, 'WriteAllBytes', {
      path: join(data(), 'before.txt'),
      contents: Buffer.from('x'),
      lastWriteUtc: null,
      mode: null,
    });

    await writeFile(agent.configPath, configFor(second, { allowed: '127.0.0.1', roots: [data2()] }));
    const answer = await requestControl(socket, { command: 'reload' });
    assert.ok(answer.ok && 'applied' in answer, JSON.stringify(answer));
    assert.deepEqual(answer.restartRequired, []);
    for (const name of [
      'Listener/AllowedAddresses',
      'AllowedRoots',
      'Listener/Encryption/CertificateFile + KeyFile',
    ])
      assert.ok(answer.applied.includes(name), `${name} in ${answer.applied.join(', ')}`);

    // The same connection, the same process: output keeps coming after the reload.
    const seen = stdoutText(c.events.get(11)).length;
    await until(() => stdoutText(c.events.get(11)).length > seen + 20, 15_000, 'output after the reload');
    assert.equal(c.closeError, undefined);
    await c.ping();
    // The running host got the new AllowedRoots for its next request.
    await assert.rejects(
      c.call(OTTER, 'WriteAllBytes', {
        path: join(data(), 'after.txt'),
        contents: Buffer.from('x'),
        lastWriteUtc: null,
        mode: null,
      }),
      (e: ReplyError) => e.kind === 'AccessDenied',
    );
    await c.call(OTTER, 'WriteAllBytes', {
      path: join(data2(), 'after.txt'),
      contents: Buffer.from('x'),
      lastWriteUtc: null,
      mode: null,
    });

    // New handshakes present the new certificate; the old pin fails.
    const fresh = await agent.connect({ thumbprint: second.thumbprint });
    await new TestClient(fresh.connection).ping();
    fresh.connection.close();
    await assert.rejects(agent.connect(), /thumbprint/i);
    // 127.0.0.2 is no longer allowed: closed before a byte is read.
    const refused = await rawExchange('127.0.0.1', agent.port, [], {
      localAddress: '127.0.0.2',
      waitMs: 3000,
    });
    assert.equal(refused.closed, true);
    assert.equal(refused.received.length, 0);
    const st = await requestControl(socket, { command: 'status' });
    assert.ok(st.ok && 'status' in st);
    assert.equal(st.status.rejected.address, 1);

    await c.call(OTTER, 'TerminateProcess', { processToken: 11, entireTree: true });
    c.close();
  });

  test('a config with an error is refused whole (reload and SIGHUP); restart-only changes are named', async () => {
    const good = await readFile(agent.configPath, 'utf8');
    await writeFile(
      agent.configPath,
      good.replace('<AllowedRoots>', '<MaxHostProcesses>zero</MaxHostProcesses><AllowedRoots>'),
    );
    const bad = await requestControl(socket, { command: 'reload' });
    assert.deepEqual(bad, { ok: false, error: 'MaxHostProcesses: "zero" is not a whole number' });
    agent.child.kill('SIGHUP');
    await agent.waitForLog((r) => r.msg?.startsWith('reload refused') === true && r.error === bad.error);
    // Still serving, with the running config (the new certificate).
    const c = await agent.connect({ thumbprint: second.thumbprint });
    await new TestClient(c.connection).ping();
    c.connection.close();

    await writeFile(agent.configPath, good.replace('127.0.0.1:0"', `127.0.0.1:${metricsPort + 1}"`));
    const later = await requestControl(socket, { command: 'reload' });
    assert.ok(later.ok && 'restartRequired' in later, JSON.stringify(later));
    assert.deepEqual(later.restartRequired, ['Metrics']);
    const cli = await runCli(['reload', '--socket', socket]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /changed but needs a restart: Metrics/);
  });

  test('metrics: Prometheus text over HTTP with connections, rejections, durations, processes, sessions', async () => {
    const c = new TestClient((await agent.connect({ thumbprint: second.thumbprint })).connection);
    // A new session's first request may wait for a host to boot on a loaded machine.
    assert.equal(
      (await c.request(OTTER, 'FileExists', { path: join(data2(), 'after.txt') }, 30_000)).kind,
      'response',
    );
    const { body, status, type } = await scrape(metricsPort);
    c.close();
    assert.equal(status, 200);
    assert.match(type, /^text\/plain/);
    assert.ok((sample(body, 'outpost_connections_total') ?? 0) >= 5, body);
    assert.equal(sample(body, 'outpost_handshakes_rejected_total{reason="address"}'), 1);
    assert.ok((sample(body, 'outpost_processes_started_total') ?? 0) >= 2, body);
    assert.ok((sample(body, 'outpost_request_duration_seconds_count{command="FileExists"}') ?? 0) >= 1, body);
    assert.ok(
      (sample(body, 'outpost_request_duration_seconds_count{command="WriteAllBytes"}') ?? 0) >= 3,
      body,
    );
    assert.ok((sample(body, 'outpost_sessions') ?? 0) >= 1);
    assert.ok((sample(body, 'outpost_sessions_started_total') ?? 0) >= 4);
    assert.ok((sample(body, 'outpost_received_bytes_total') ?? 0) > 0);
    assert.ok((sample(body, 'outpost_sent_bytes_total') ?? 0) > 0);
    assert.ok((sample(body, 'outpost_host_processes') ?? -1) >= 0);
    assert.match(body, /^outpost_replay_cache_hits_total 0$/m);
  });

  test('audit log: every mutation once, with paths and outcome, never contents; sessions start and end', async () => {
    const c = new TestClient((await agent.connect({ thumbprint: second.thumbprint })).connection);
    const secret = 'CONTENTS-NEVER-LOGGED';
    const p = (n: string) => join(data2(), n);
    // The first request of the session boots its host: a long wait on a loaded machine.
    assert.equal((await c.request(OTTER, 'CreateDirectory', { path: p('d') }, 30_000)).kind, 'response');
    await c.call(OTTER, 'WriteAllBytes', {
      path: p('d/a.txt'),
      contents: Buffer.from(secret),
      lastWriteUtc: null,
      mode: null,
    });
    await c.call(OTTER, 'Move', { source: p('d/a.txt'), target: p('d/b.txt'), overwrite: false });
    await c.call(OTTER, 'ReadAllBytes', { path: p('d/b.txt') }); // a read: not audited
    await c.call(OTTER, 'DeleteFile', { path: p('d/b.txt') });
    await assert.rejects(c.call(OTTER, 'DeleteDirectory', { path: '/etc', recursive: true }));
    const env = await c.sendRaw(
      encodeProductRequest(OTTER, 'StartProcess', 21, {
        fileName: 'sh',
        args: ['-c', `env; echo ${secret}`],
        workingDirectory: data2(),
        environment: { TOKEN: secret },
        flags: 0,
      }),
      21,
      20_000,
    );
    assert.equal(env.kind, 'response');
    await until(() => exitedOf(c.events.get(21)) !== null, 15_000, 'env exits');
    c.close();
    await c.closed;

    // Clean environment: nothing `npm start` injects reaches the process.
    const out = stdoutText(c.events.get(21));
    assert.match(out, /^PATH=/m);
    assert.doesNotMatch(out, /npm_|INIT_CWD|node_modules\/\.bin/);
    assert.match(out, /^TOKEN=/m, 'the request environment is still passed');

    const lines = (await readFile(audit(), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const text = await readFile(audit(), 'utf8');
    assert.ok(!text.includes(secret), 'no contents, argument or environment value in the audit log');
    const mine = lines.filter(
      (l) => Array.isArray(l.paths) && (l.paths as string[]).some((x) => x.startsWith(p('d'))),
    );
    assert.deepEqual(
      mine.map((l) => [l.command, l.outcome]),
      [
        ['CreateDirectory', 'ok'],
        ['WriteAllBytes', 'ok'],
        ['Move', 'ok'],
        ['DeleteFile', 'ok'],
      ],
    );
    const write = mine[1]!;
    assert.equal(write.bytes, secret.length);
    assert.equal(write.principal, 'addr:127.0.0.1');
    assert.equal(write.remote, '127.0.0.1');
    assert.equal(typeof write.session, 'number');
    assert.equal(typeof write.durationMs, 'number');
    assert.deepEqual(mine[2]!.paths, [p('d/a.txt'), p('d/b.txt')]);
    const denied = lines.find((l) => l.command === 'DeleteDirectory');
    assert.equal(denied?.outcome, 'AccessDenied');
    const started = lines.find(
      (l) => l.command === 'StartProcess' && (l.environmentNames as string[] | undefined)?.length,
    );
    assert.deepEqual(started?.environmentNames, ['TOKEN']);
    assert.equal(started?.argumentCount, 2);
    assert.equal(typeof started?.pid, 'number');
    assert.ok(lines.some((l) => l.event === 'session-start' && l.session === write.session));
    assert.ok(lines.some((l) => l.command === 'TerminateProcess'));
    assert.equal((await stat(audit())).mode & 0o777, 0o600);
  });
});
