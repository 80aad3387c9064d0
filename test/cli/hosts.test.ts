/**
 * The hosts file (src/cli/hosts.ts), in process: TOML aliases and groups,
 * the one ordered resolution, `-p`, the ssh-like refusal of files others
 * can read, key files, remote arguments with aliases and groups, and the
 * completion scripts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bashScript } from '../../src/cli/completion.js';
import { connectionSettings } from '../../src/cli/connection.js';
import { UsageError } from '../../src/cli/errors.js';
import { mergeFlags } from '../../src/cli/fanout.js';
import {
  hostsFilePath,
  loadHostsConfig,
  parseHostsConfig,
  resolveTargets,
  sameHostRemotes,
  splitRemote,
} from '../../src/cli/hosts.js';
import { aliasBlock } from '../../src/cli/hosts-command.js';
import { buildProgram } from '../../src/cli/program.js';

const KEY = 'ab'.repeat(32);
const TEXT = `
# fleet
[hosts.web01]
address = "10.0.0.5"
key = "${KEY}"

[hosts.web02]
address = "10.0.0.6:4000"
mode = "ssl"
thumbprint = "${'CD'.repeat(32)}"

[hosts.db]
address = "::1"
port = 5000
key_file = "fleet.key"

[groups]
web = ["web01", "web02", "10.0.0.7"]
all = ["@web", "db", "web01"]
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'outpost-hosts-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('hosts file', () => {
  it('finds the file: --config, then OUTPOST_CONFIG, then XDG_CONFIG_HOME, then ~/.config', () => {
    assert.equal(hostsFilePath('/x/h.toml', { OUTPOST_CONFIG: '/y' }), '/x/h.toml');
    assert.equal(hostsFilePath(undefined, { OUTPOST_CONFIG: '/y/h.toml' }), '/y/h.toml');
    assert.equal(hostsFilePath(undefined, { XDG_CONFIG_HOME: '/c', HOME: '/h' }), '/c/outpost/hosts.toml');
    assert.equal(hostsFilePath(undefined, { HOME: '/h' }), '/h/.config/outpost/hosts.toml');
  });

  it('resolves aliases, groups (nested, without repeats) and literal addresses in order; -p for hosts that name no port', async () => {
    const config = parseHostsConfig(TEXT, '/etc/h.toml');
    const all = await resolveTargets(['@all', '10.1.1.1'], { ctx: { config } });
    assert.deepEqual(
      all.map((t) => [t.target.label, t.target.host, t.target.port]),
      [
        ['web01', '10.0.0.5', 46336],
        ['web02', '10.0.0.6', 4000],
        ['10.0.0.7', '10.0.0.7', 46336],
        ['db', '::1', 5000],
        ['10.1.1.1', '10.1.1.1', 46336],
      ],
    );
    assert.equal(all[0]!.flags.key, KEY);
    assert.equal(all[3]!.flags.keyFile, '/etc/fleet.key', 'key_file is relative to the hosts file');
    const p = await resolveTargets(['web01', '10.0.0.9', '10.0.0.9:7'], { ctx: { config, port: 9999 } });
    assert.deepEqual(
      p.map((t) => t.target.port),
      [9999, 9999, 7],
    );
    await assert.rejects(
      resolveTargets(['@nope'], { ctx: { config } }),
      /no group "nope" in \/etc\/h\.toml; groups: @web, @all/,
    );
  });

  it('a --hosts line may name an alias; its own settings win', async () => {
    const config = parseHostsConfig(TEXT, '/etc/h.toml');
    const list = join(dir, 'list.txt');
    await writeFile(list, `web01 mode=aes\n10.2.2.2\n`);
    const r = await resolveTargets([], { hostsFile: list, ctx: { config } });
    assert.deepEqual(
      r.map((t) => [t.target.label, t.flags.mode, t.source]),
      [
        ['web01', 'aes', '/etc/h.toml: [hosts.web01]'],
        ['10.2.2.2', undefined, `${list}:2`],
      ],
    );
  });

  it('says what is wrong in a bad file', () => {
    assert.throws(() => parseHostsConfig('[hosts.a]\nport = 1\n', 'h'), /h: \[hosts\.a\] needs address/);
    assert.throws(
      () => parseHostsConfig('[hosts.a]\naddress="x"\nuser="root"\n', 'h'),
      /"user" is not a host setting/,
    );
    assert.throws(() => parseHostsConfig('[hosts.a\n', 'h'), /^UsageError: h:1:\d+: not valid TOML/);
    assert.throws(() => parseHostsConfig('[groups]\nweb = "a"\n', 'h'), /must be a list of host names/);
    assert.throws(() => parseHostsConfig('[misc]\n', 'h'), /unknown table \[misc\]/);
  });

  it('refuses, like ssh, a hosts file with keys or a key file that others can read, naming the chmod', async () => {
    const file = join(dir, 'hosts.toml');
    await writeFile(file, TEXT, { mode: 0o644 });
    await chmod(file, 0o644);
    await assert.rejects(
      loadHostsConfig(file),
      (e: Error) =>
        e instanceof UsageError && e.message.includes(`mode 644); make it private: chmod 600 ${file}`),
    );
    await chmod(file, 0o600);
    assert.equal((await loadHostsConfig(file)).hosts.size, 3);
    // Without keys in it the file may be world-readable (key_file only).
    const open = join(dir, 'open.toml');
    await writeFile(open, '[hosts.x]\naddress = "1.2.3.4"\nkey_file = "k"\n', { mode: 0o644 });
    await chmod(open, 0o644);
    const cfg = await loadHostsConfig(open);
    const keyFile = join(dir, 'k');
    await writeFile(keyFile, `# fleet key\n${KEY}\n`, { mode: 0o644 });
    await chmod(keyFile, 0o644);
    const flags = mergeFlags({ key: 'cli-key-loses' }, cfg.hosts.get('x')!.flags);
    await assert.rejects(connectionSettings(flags, {}), /key file .*k is readable by others .*chmod 600/);
    await chmod(keyFile, 0o600);
    const s = await connectionSettings(flags, {});
    assert.equal(s.mode, 'aes');
    assert.equal(s.key, KEY);
    await assert.rejects(
      loadHostsConfig(join(dir, 'missing.toml')),
      /cannot read the hosts file .*missing\.toml \(ENOENT\)/,
    );
    assert.equal(
      (await loadHostsConfig(undefined, { HOME: dir })).exists,
      false,
      'the default file may be absent',
    );
  });

  it('splits remote arguments with aliases and groups', () => {
    assert.deepEqual(splitRemote('@web:/srv/app'), { name: '@web', path: '/srv/app' });
    assert.deepEqual(splitRemote('web01:/srv'), { name: 'web01', path: '/srv' });
    assert.deepEqual(splitRemote('[::1]:4000:/srv'), { name: '[::1]:4000', path: '/srv' });
    assert.throws(() => splitRemote('@web'), /write @GROUP:PATH/);
    assert.deepEqual(sameHostRemotes(['@w:/a', '@w:/b'], 'rm'), { name: '@w', paths: ['/a', '/b'] });
    assert.throws(
      () => sameHostRemotes(['a:/x', 'b:/y'], 'rm'),
      /rm works on one agent \(or group\) at a time/,
    );
  });

  it('hosts add writes a block that reads back', () => {
    const block = aliasBlock('web03', '10.0.0.8', { port: '4000', keyFile: '/k', mode: 'AES' });
    const c = parseHostsConfig(block, 'h');
    assert.deepEqual(c.hosts.get('web03'), {
      name: 'web03',
      address: '10.0.0.8',
      port: 4000,
      flags: { mode: 'aes', keyFile: '/k' },
    });
  });

  it('the bash completion script is valid bash and lists every command', async () => {
    const script = bashScript(await buildProgram());
    execFileSync('bash', ['-n'], { input: script });
    for (const c of ['exec', 'hosts', 'completion', 'version'])
      assert.match(script, new RegExp(`\\b${c}\\b`));
  });
});
