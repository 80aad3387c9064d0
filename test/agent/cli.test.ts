/**
 * The `outpost` command itself: configuration errors stop `serve` with exit
 * code 1 and a message naming the element; `init` writes configs that work
 * and refuses to overwrite; `start` creates ./.outpost and prints how to
 * connect.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderConfigXml } from '../../src/agent/config.js';
import { connectToAgent } from '../../src/transport/index.js';
import { cliCommand, runCli, startAgentProcess, TestClient, tempDir } from '../helpers/agent.js';

let dir: string;
before(async () => {
  dir = await tempDir();
});
after(() => rm(dir, { recursive: true, force: true }));

describe('outpost serve: configuration errors', () => {
  it('each stops the start with exit code 1 and names the element', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const busyPort = (busy.address() as import('node:net').AddressInfo).port;
    const badKey = 'abcdef0123';
    const cases: [name: string, xml: string, expect: RegExp][] = [
      [
        'bad-key',
        renderConfigXml({ mode: 'aes', keyHex: badKey, address: '127.0.0.1', port: 0 }),
        /Listener\/Encryption\/Key: AES key must be 32, 48 or 64 hex digits/,
      ],
      [
        'no-cert',
        renderConfigXml({
          mode: 'ssl',
          certificateFile: 'missing.crt',
          keyFile: 'missing.key',
          address: '127.0.0.1',
          port: 0,
        }),
        /Listener\/Encryption\/CertificateFile: cannot read .*missing\.crt/,
      ],
      [
        'port-in-use',
        renderConfigXml({ mode: 'aes', keyHex: 'a'.repeat(64), address: '127.0.0.1', port: busyPort }),
        new RegExp(`Listener/Port: port ${busyPort} on 127.0.0.1 is already in use`),
      ],
      [
        'bad-xml',
        '<InedoAgentConfig><Listener></InedoAgentConfig>',
        /InedoAgentConfig: .*bad-xml\.config is not well-formed XML \(line 1/,
      ],
    ];
    try {
      const results = await Promise.all(
        cases.map(async ([name, xml]) => {
          const file = join(dir, `${name}.config`);
          await writeFile(file, xml);
          return runCli(['serve', '--config', file]);
        }),
      );
      for (const [i, [name, , expect]] of cases.entries()) {
        const r = results[i]!;
        assert.equal(r.code, 1, `${name}: exit code (stderr: ${r.stderr})`);
        assert.match(r.stderr, expect, `${name}: stderr`);
        assert.match(r.stderr, /^outpost: /);
        assert.doesNotMatch(r.stderr, /\n\s+at /, `${name}: no stack trace`);
      }
      assert.ok(!results[0]!.stderr.includes(badKey), 'the key is not echoed');
    } finally {
      busy.close();
    }
  });

  it('says where it looked and what to run when there is no config', async () => {
    const r = await runCli(['serve', '--config', join(dir, 'nope.config')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--config: .*nope\.config does not exist; create one with `outpost init/);
    const cwdRun = await runCli(['serve'], { cwd: dir });
    // ./InedoAgent.config is absent in dir; /etc/outpost may or may not exist on this machine, so
    // only the "absent" outcome is checked when it is absent.
    let etcExists = true;
    try {
      await stat('/etc/outpost/InedoAgent.config');
    } catch {
      etcExists = false;
    }
    if (!etcExists) {
      assert.equal(cwdRun.code, 1);
      assert.match(
        cwdRun.stderr,
        /no configuration found \(looked for .*InedoAgent\.config and \/etc\/outpost/,
      );
    } else {
      assert.notEqual(cwdRun.stderr, '');
    }
  });

  it('warns loudly when mode none listens on a non-loopback address', async (t) => {
    const agent = await startAgentProcess({
      mode: 'none',
      address: '0.0.0.0',
      allowedAddresses: ['127.0.0.1'],
    });
    t.after(() => agent.stop());
    assert.match(
      agent.stderr(),
      /WARNING: encryption mode none on 0\.0\.0\.0: anyone who can reach this port/,
    );
    const rec = await agent.waitForLog((l) => String(l.msg).includes('ANYONE WHO CAN REACH PORT'));
    assert.equal(rec.level, 40);
  });
});

describe('outpost init', () => {
  it('writes a working AES config, prints the key once, and refuses to overwrite', async (t) => {
    const file = join(dir, 'init-aes', 'InedoAgent.config');
    const r = await runCli(['init', '--config', file, '--address', '127.0.0.1', '--port', '0']);
    assert.equal(r.code, 0, r.stderr);
    const key = /\b([0-9a-f]{64})\b/.exec(r.stdout)?.[1];
    assert.ok(key, `key printed: ${r.stdout}`);
    assert.match(r.stdout, new RegExp(`outpost serve --config ${file.replace(/[.]/g, '\\.')}`));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const written = await readFile(file, 'utf8');
    assert.ok(written.includes(key));

    const again = await runCli(['init', '--config', file]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; pass --force/);
    assert.equal(await readFile(file, 'utf8'), written, 'unchanged');

    const agent = await startAgentProcess({
      configFile: file,
      mode: 'aes',
      connectWith: { key: Buffer.from(key, 'hex') },
    });
    t.after(() => agent.stop());
    const c = await agent.connect();
    const client = new TestClient(c.connection);
    await client.ping();
    client.close();

    const forced = await runCli(['init', '--config', file, '--force', '--port', '0']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(/\b([0-9a-f]{64})\b/.exec(forced.stdout)?.[1], key, 'a new key');
  });

  it('writes a working ssl config with a self-signed certificate and prints its thumbprint', async (t) => {
    const file = join(dir, 'init-ssl', 'InedoAgent.config');
    const r = await runCli([
      'init',
      '--config',
      file,
      '--mode',
      'ssl',
      '--address',
      '127.0.0.1',
      '--port',
      '0',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const thumbprint = /((?:[0-9A-F]{2}:){31}[0-9A-F]{2})/.exec(r.stdout)?.[1];
    assert.ok(thumbprint, r.stdout);
    assert.equal((await stat(join(dir, 'init-ssl', 'outpost-agent.key'))).mode & 0o777, 0o600);
    const agent = await startAgentProcess({ configFile: file, mode: 'ssl', connectWith: { thumbprint } });
    t.after(() => agent.stop());
    const c = await agent.connect();
    const client = new TestClient(c.connection);
    await client.ping();
    client.close();
  });

  it('rejects a bad mode, naming the option', async () => {
    const bad = await runCli(['init', '--config', join(dir, 'x.config'), '--mode', 'rot13']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--mode: "rot13" must be aes, ssl or none/);
  });
});

describe('outpost start', () => {
  it('creates ./.outpost with an AES key on 127.0.0.1, serves, and prints how to connect', async () => {
    const cwd = join(dir, 'start');
    await import('node:fs/promises').then((fs) => fs.mkdir(cwd));
    const { command, args } = cliCommand(['start', '--port', '0']);
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const banner = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no banner: ${out}`)), 20_000);
        child.stdout.on('data', (d: string) => {
          out += d;
          if (/key: +[0-9a-f]{64}/.test(out) && /port: \d+/.test(out)) {
            clearTimeout(timer);
            resolve(out);
          }
        });
      });
      const key = /key: +([0-9a-f]{64})/.exec(banner)![1]!;
      const port = Number(/port: (\d+)/.exec(banner)![1]);
      assert.match(banner, /host: 127\.0\.0\.1/);
      assert.match(banner, /mode: aes/);
      const config = await readFile(join(cwd, '.outpost', 'InedoAgent.config'), 'utf8');
      assert.ok(config.includes(key));
      assert.match(config, /<Address>127\.0\.0\.1<\/Address>/);
      const c = await connectToAgent({ host: '127.0.0.1', port, mode: 'aes', key: Buffer.from(key, 'hex') });
      const client = new TestClient(c.connection);
      await client.ping();
      client.close();
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0);
  });
});
