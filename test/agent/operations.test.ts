/**
 * The operator's pieces in-process: the settings (config-operations.ts),
 * what a reload applies and what waits for a restart (reload.ts), the log
 * file rotated by size, the service environment of remote processes, and
 * the audit log's lines.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuditLog } from '../../src/agent/audit.js';
import { parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { parseMetricsAddress } from '../../src/agent/config-operations.js';
import { RotatingFile } from '../../src/agent/log.js';
import { mergeReload } from '../../src/agent/reload.js';
import type { Session } from '../../src/agent/sessions.js';
import { serviceEnvironment } from '../../src/host/spawning.js';
import {
  decodeClientMessage,
  ErrorKind,
  encodeError,
  encodeProductRequest,
  encodeResponseRaw,
} from '../../src/protocol/index.js';
import { tempDir } from '../helpers/agent.js';

const KEY = 'cd'.repeat(32);
const parse = (
  extra: Partial<Parameters<typeof renderConfigXml>[0]> = {},
  path = '/etc/outpost/InedoAgent.config',
) => parseConfig(renderConfigXml({ mode: 'aes', keyHex: KEY, ...extra }), path);

describe('operations settings', () => {
  test('defaults: control socket beside the state, metrics and audit off, info, 10 MiB × 5', async () => {
    const c = await parse();
    assert.deepEqual(c.operations, {
      controlSocket: '/etc/outpost/state/control.sock',
      controlSocketExplicit: false,
      metrics: null,
      auditLogFile: null,
      logLevel: 'info',
      logFileMaxSize: 10 * 1024 * 1024,
      logFileCount: 5,
    });
  });

  test('every element read, relative paths against the config directory', async () => {
    const c = await parse({
      extraXml:
        '<ControlSocket>run/c.sock</ControlSocket><Metrics Address="[::1]:9400"/><AuditLogFile>audit.log</AuditLogFile>' +
        '<LogLevel>DEBUG</LogLevel><LogFileMaxSize>1048576</LogFileMaxSize><LogFileCount>2</LogFileCount>',
    });
    assert.equal(c.operations.controlSocket, '/etc/outpost/run/c.sock');
    assert.deepEqual(c.operations.metrics, { host: '::1', port: 9400 });
    assert.equal(c.operations.auditLogFile, '/etc/outpost/audit.log');
    assert.equal(c.operations.logLevel, 'debug');
    assert.equal(c.operations.logFileMaxSize, 1048576);
    assert.equal(c.operations.logFileCount, 2);
    assert.deepEqual(c.warnings, []);
  });

  test('errors name the setting', async () => {
    await assert.rejects(
      parse({ extraXml: '<LogLevel>loud</LogLevel>' }),
      /^ConfigError: LogLevel: "loud" must be one of/,
    );
    await assert.rejects(
      parse({ extraXml: '<Metrics Address="127.0.0.1:99999"/>' }),
      /Metrics\/@Address: .*port/,
    );
    await assert.rejects(
      parse({ extraXml: `<ControlSocket>/${'x'.repeat(120)}</ControlSocket>` }),
      /ControlSocket: .*107 bytes/,
    );
    assert.deepEqual(parseMetricsAddress('0.0.0.0'), { host: '0.0.0.0', port: 9346 });
    assert.deepEqual(parseMetricsAddress('::1'), { host: '::1', port: 9346 });
  });
});

describe('reload plan', () => {
  test('reloadable settings are applied and named; restart-only ones keep their running value and are named', async () => {
    const running = await parse({ port: 46336, allowedAddresses: ['10.0.0.0/8'], maxProcessesPerSession: 8 });
    const next = await parse({
      port: 46400,
      keyHex: 'ef'.repeat(32),
      allowedAddresses: ['10.0.0.0/8', '192.168.0.0/16'],
      allowedRoots: ['/srv'],
      maxProcessesPerSession: 4,
      sessionIdleTimeout: 60,
      extraXml: '<LogLevel>warn</LogLevel><AuditLogFile>/var/log/a</AuditLogFile>',
    });
    const plan = mergeReload(running, next);
    assert.deepEqual(plan.applied, [
      'Listener/AllowedAddresses',
      'AllowedRoots',
      'SessionIdleTimeout',
      'MaxProcessesPerSession',
      'LogLevel',
    ]);
    assert.deepEqual(plan.restartRequired, ['Listener/Port', 'Listener/Encryption/Key', 'AuditLogFile']);
    assert.equal(plan.config.listener.port, 46336);
    assert.equal(plan.config.listener.encryption, running.listener.encryption);
    assert.equal(plan.config.operations.auditLogFile, null);
    assert.equal(plan.config.operations.logLevel, 'warn');
    assert.deepEqual(plan.config.allowedRoots, ['/srv']);
    assert.equal(plan.config.maxProcessesPerSession, 4);
    assert.equal(plan.config.listener.allowedAddresses.length, 2);
  });

  test('the same file again changes nothing', async () => {
    const a = await parse();
    const plan = mergeReload(a, await parse());
    assert.deepEqual([plan.applied, plan.restartRequired], [[], []]);
  });
});

describe('log file rotation and the service environment', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('outpost-ops-unit-');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('LogFile keeps its name; at MaxSize it becomes .1, .1 becomes .2, beyond LogFileCount removed', async () => {
    const file = join(dir, 'agent.log');
    const f = new RotatingFile(file, 100, 2);
    for (let i = 0; i < 10; i++) f.write(`${JSON.stringify({ i, pad: 'x'.repeat(30) })}\n`);
    f.close();
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('agent.log')).sort(), [
      'agent.log',
      'agent.log.1',
      'agent.log.2',
    ]);
    const live = (await readFile(file, 'utf8')).trim().split('\n');
    assert.ok(Buffer.byteLength(await readFile(file)) <= 100);
    assert.equal(JSON.parse(live.at(-1)!).i, 9, 'the newest line is in the live file');
    const older = (await readFile(`${file}.1`, 'utf8')).trim().split('\n');
    assert.equal(JSON.parse(older.at(-1)!).i, JSON.parse(live[0]!).i - 1, 'nothing lost between files');
  });

  test('serviceEnvironment drops npm_*, INIT_CWD, NODE and node_modules/.bin from PATH', () => {
    const env = serviceEnvironment({
      npm_lifecycle_event: 'start',
      NPM_CONFIG_X: '1',
      INIT_CWD: '/p',
      NODE: '/usr/bin/node',
      HOME: '/home/a',
      PATH: '/p/node_modules/.bin:/node_modules/.bin:/usr/lib/node_modules/npm/node_modules/@npmcli/run-script/lib/node-gyp-bin:/usr/bin:/bin',
    });
    assert.deepEqual({ ...env }, { HOME: '/home/a', PATH: '/usr/bin:/bin' });
    // Without npm, NODE and INIT_CWD are the user's own.
    assert.deepEqual(
      { ...serviceEnvironment({ NODE: '/n', INIT_CWD: '/i', PATH: '/usr/bin' }) },
      {
        NODE: '/n',
        INIT_CWD: '/i',
        PATH: '/usr/bin',
      },
    );
  });

  test('audit lines: a mutation with its outcome, reads not at all, a read-only OpenFile not at all', async () => {
    const file = join(dir, 'audit', 'audit.log');
    const log = new AuditLog(file);
    const session = {
      id: 5,
      principal: 'aes:0011223344556677',
      remote: '10.1.2.3',
      createdAt: Date.now(),
    } as Session;
    const body = (name: Parameters<typeof encodeProductRequest>[1], args: never) =>
      decodeClientMessage(encodeProductRequest(1, name, 1, args)).data;
    assert.equal(
      log.request(session, 'ReadAllBytes', body('ReadAllBytes', { path: '/x' } as never)),
      undefined,
    );
    assert.equal(
      log.request(session, 'OpenFile', body('OpenFile', { path: '/x', fileMode: 3, access: 1 } as never)),
      undefined,
    );
    const done = log.request(session, 'DeleteFile', body('DeleteFile', { path: '/srv/a' } as never));
    assert.ok(done);
    done(encodeResponseRaw(1, Buffer.alloc(0)));
    log.request(
      session,
      'SetMode',
      body('SetMode', { path: '/srv/b', mode: 0o600 } as never),
    )?.(encodeError(1, ErrorKind.AccessDenied, 'no'));
    log.sessionEnded(session, 'CloseSession');
    log.close();
    const lines = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.event, l.command, l.paths, l.outcome, l.principal, l.remote]),
      [
        ['request', 'DeleteFile', ['/srv/a'], 'ok', 'aes:0011223344556677', '10.1.2.3'],
        ['request', 'SetMode', ['/srv/b'], 'AccessDenied', 'aes:0011223344556677', '10.1.2.3'],
        ['session-end', undefined, undefined, undefined, 'aes:0011223344556677', '10.1.2.3'],
      ],
    );
  });
});
