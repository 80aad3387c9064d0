/**
 * `outpost service`: the unit's contents for every case, checked by
 * `systemd-analyze verify` (which runs without a running systemd), and
 * `install` printing the unit when systemd is not running.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type AgentConfig, parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { renderUnit, unitWord } from '../../src/cli/service-unit.js';
import { runCli, tempDir } from '../helpers/agent.js';

const KEY = 'ab'.repeat(32);
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

function verify(file: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(ANALYZE!, ['verify', file], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, out: `${stdout}${stderr}`.trim() }),
    );
  });
}

describe('service unit', () => {
  let dir: string;
  let roots: AgentConfig;
  let open: AgentConfig;
  const node = process.execPath;
  const main = join(process.cwd(), 'src', 'cli', 'main.ts'); // any existing file: verify checks ExecStart's binary
  before(async () => {
    dir = await tempDir('outpost-unit-');
    await mkdir(join(dir, 'etc'));
    const xml = (extra: Partial<Parameters<typeof renderConfigXml>[0]>) =>
      renderConfigXml({ mode: 'aes', keyHex: KEY, port: 46336, ...extra });
    roots = await parseConfig(
      xml({ allowedRoots: ['/srv/app', '/srv/my data'], logFile: '/var/log/outpost/agent.log' }),
      join(dir, 'etc', 'InedoAgent.config'),
    );
    open = await parseConfig(xml({}), join(dir, 'etc', 'InedoAgent.config'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('with --user and AllowedRoots: the sandbox, writable only AllowedRoots and the state', () => {
    const unit = renderUnit(roots, {
      node,
      main,
      configPath: '/etc/outpost/InedoAgent.config',
      user: 'outpost',
    });
    const t = unit.text;
    assert.match(t, /^User=outpost$/m);
    for (const line of [
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=read-only',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'CapabilityBoundingSet=',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'WantedBy=multi-user.target',
    ])
      assert.ok(t.split('\n').includes(line), `${line} in\n${t}`);
    assert.ok(t.includes(`ExecStart=${node} ${main} serve --config /etc/outpost/InedoAgent.config\n`), t);
    const rw = /^ReadWritePaths=(.*)$/m.exec(t)?.[1];
    const state = join(dir, 'etc', 'state');
    // state holds the root paths, the cache and the control socket: listed once, as the outermost directory.
    assert.equal(rw, `-/srv/app "-/srv/my data" -${state} -/var/log/outpost`);
    assert.deepEqual(unit.notes, []);
  });

  test('a port below 1024 gets CAP_NET_BIND_SERVICE and nothing else', async () => {
    const low = await parseConfig(
      renderConfigXml({ mode: 'aes', keyHex: KEY, port: 443, allowedRoots: ['/srv'] }),
      join(dir, 'etc', 'InedoAgent.config'),
    );
    const t = renderUnit(low, { node, main, configPath: '/c', user: 'outpost' }).text;
    assert.match(t, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    assert.match(t, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
  });

  test('without AllowedRoots the file-system sandbox cannot apply, and the note says so', () => {
    const unit = renderUnit(open, { node, main, configPath: '/c', user: 'outpost' });
    assert.doesNotMatch(unit.text, /ProtectSystem|ReadWritePaths/);
    assert.match(unit.text, /^NoNewPrivileges=yes$/m);
    assert.match(unit.notes.join('\n'), /no AllowedRoots: the file-system sandbox .* cannot apply/);
  });

  test('without --user: root, no sandbox, and a note', () => {
    const unit = renderUnit(roots, { node, main, configPath: '/c' });
    assert.doesNotMatch(unit.text, /^User=|ProtectSystem|NoNewPrivileges/m);
    assert.match(unit.notes.join('\n'), /runs as root without a sandbox/);
  });

  test('a config inside a writable directory is named', () => {
    const unit = renderUnit(roots, { node, main, configPath: '/srv/app/InedoAgent.config', user: 'outpost' });
    assert.match(unit.notes.join('\n'), /config file lies inside \/srv\/app/);
  });

  test('unit words: % and $ doubled, spaces quoted', () => {
    assert.equal(unitWord('/a b/%x$y'), '"/a b/%%x$$y"');
    assert.equal(unitWord('/plain'), '/plain');
  });

  test('systemd-analyze verify accepts every variant without a warning', async (t) => {
    if (!ANALYZE) {
      // Not a skip: the unit's contents are asserted above; say loudly that this check did not run.
      t.diagnostic(
        'systemd-analyze is not installed here: the unit was NOT verified by systemd (install systemd to check)',
      );
      console.warn('service.test: systemd-analyze not found; unit verification did not run');
      return;
    }
    const variants = {
      sandboxed: renderUnit(roots, {
        node,
        main,
        configPath: '/etc/outpost/InedoAgent.config',
        user: 'outpost',
      }),
      open: renderUnit(open, { node, main, configPath: '/c', user: 'outpost' }),
      root: renderUnit(roots, { node, main, configPath: '/c' }),
    };
    for (const [name, unit] of Object.entries(variants)) {
      const file = join(dir, `outpost-${name}.service`);
      await writeFile(file, unit.text);
      const r = await verify(file);
      assert.equal(r.code, 0, `${name}: ${r.out}`);
      assert.equal(r.out, '', `${name}: systemd-analyze said:\n${r.out}`);
    }
    // And it does complain about a misspelt key, so silence means something.
    const bad = join(dir, 'outpost-bad.service');
    await writeFile(bad, variants.sandboxed.text.replace('ProtectClock=', 'ProtectClok='));
    assert.match((await verify(bad)).out, /Unknown key 'ProtectClok'/);
  });

  test('`outpost service install --user` without a running systemd says so and prints the unit', async (t) => {
    if (existsSync('/run/systemd/system')) {
      t.diagnostic('systemd runs here: --print is used instead, so nothing is installed');
    }
    const config = join(dir, 'etc', 'InedoAgent.config');
    await writeFile(config, renderConfigXml({ mode: 'aes', keyHex: KEY, allowedRoots: ['/srv/app'] }), {
      mode: 0o600,
    });
    const args = ['service', 'install', '--config', config, '--user', 'outpost'];
    if (existsSync('/run/systemd/system')) args.push('--print');
    const r = await runCli(args);
    assert.equal(r.code, 0, r.stderr);
    if (!existsSync('/run/systemd/system'))
      assert.match(r.stderr, /systemd is not running on this machine .*nothing was installed/);
    assert.match(r.stdout, /^\[Service\]$/m);
    assert.match(r.stdout, /^ReadWritePaths=-\/srv\/app /m);
  });
});
