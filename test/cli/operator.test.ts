/**
 * What an operator reaches for, end to end over one real agent (mode aes):
 * a hosts file with aliases and a group (key from a private key file),
 * fan-out of ls/cat/get/put over a group, --json lines, --fail-fast, no
 * MaxListenersExceededWarning on a 12-host put, ps and kill of a process
 * from another terminal, exec --detach and attach (output since the start,
 * the exit code, after it finished; once), and version.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CliAgent,
  cli,
  closedPort,
  collectChild,
  makeRoot,
  spawnCli,
  startCliAgent,
} from './helpers.js';

let root: string;
let a: CliAgent;
let env: NodeJS.ProcessEnv;
// 11 hosts: one more than an EventEmitter's default listener limit.
const ALIASES = Array.from({ length: 11 }, (_, i) => `n${i}`);
/** Fan-out runs start a host process per session; on a loaded machine that takes a while. */
const SLOW = 120_000;

before(async () => {
  root = await makeRoot();
  a = await startCliAgent({ root });
  const keyFile = join(root, 'fleet.key');
  await writeFile(keyFile, `${a.keyHex}\n`, { mode: 0o600 });
  const dead = await closedPort();
  const host = (name: string, port = a.agent.port) =>
    `[hosts.${name}]\naddress = "127.0.0.1"\nport = ${port}\nkey_file = "fleet.key"\n`;
  await writeFile(
    join(root, 'hosts.toml'),
    `${host('web01')}\n${host('web02')}\n${host('down', dead)}\n${ALIASES.map((n) => host(n)).join('\n')}\n` +
      `[groups]\nweb = ["web01", "web02"]\nsome = ["web01", "down", "web02"]\nmany = [${ALIASES.map((n) => `"${n}"`).join(', ')}]\n`,
    { mode: 0o644 },
  );
  // No OUTPOST_KEY: every key comes from the hosts file's key_file.
  env = { OUTPOST_CONFIG: join(root, 'hosts.toml') };
  await mkdir(join(root, 'data'));
  await writeFile(join(root, 'data', 'hello.txt'), 'hello\nworld\n');
});
after(async () => {
  await a?.stop();
  await rm(root, { recursive: true, force: true });
});

describe('operator', () => {
  it('runs on an alias and a group without flags; --json lines; get into a folder per host', async () => {
    const file = join(root, 'data', 'hello.txt');
    const [one, group, json, got] = await Promise.all([
      cli(['exec', 'web01', '--', 'echo', 'hi'], env, SLOW),
      cli(['cat', `@web:${file}`], env, SLOW),
      cli(['ls', `@web:${join(root, 'data')}`, '--json'], env, SLOW),
      cli(['get', `@web:${file}`, join(root, 'got'), '--parents', '-q'], env, SLOW),
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout, 'hi\n', JSON.stringify(one));
    assert.equal(group.code, 0, group.stderr);
    assert.deepEqual(group.stdout.split('\n').filter(Boolean).sort(), [
      'web01: hello',
      'web01: world',
      'web02: hello',
      'web02: world',
    ]);
    assert.match(group.stderr, /all 2 hosts succeeded/);
    assert.equal(json.code, 0, json.stderr);
    const records = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const results = records.filter((r) => r.type === 'result');
    assert.deepEqual(results.map((r) => r.host).sort(), ['web01', 'web02']);
    assert.deepEqual(
      results[0].data.map((e: { name: string }) => e.name),
      ['hello.txt'],
    );
    assert.deepEqual(records.at(-1), { type: 'summary', hosts: 2, failed: 0, interrupted: false });
    assert.equal(got.code, 0, got.stderr);
    for (const h of ['web01', 'web02'])
      assert.equal(await readFile(join(root, 'got', h, 'hello.txt'), 'utf8'), 'hello\nworld\n');
  });

  it('a host that fails gives exit 4; --fail-fast stops the rest', async () => {
    const [all, fast] = await Promise.all([
      cli(['exec', '@some', '--parallel', '1', '--', 'true'], env, SLOW),
      cli(['exec', '@some', '--parallel', '1', '--fail-fast', '--', 'true'], env, SLOW),
    ]);
    assert.equal(all.code, 4, all.stderr);
    assert.match(all.stderr, /^down +error: cannot connect/m);
    assert.match(all.stderr, /1 of 3 hosts failed/);
    assert.equal(fast.code, 4, fast.stderr);
    assert.match(fast.stderr, /^web02 +not run \(--fail-fast\)/m);
  });

  it('put to 11 hosts: one overall progress, every copy, no MaxListenersExceededWarning', async () => {
    const r = await cli(
      ['put', join(root, 'data'), `@many:${join(root, 'put-many')}/`, '--parents'],
      env,
      SLOW,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /MaxListenersExceeded/);
    assert.match(r.stderr, /^put ×11: 11 files, /m, JSON.stringify(r));
    assert.match(r.stderr, /all 11 hosts succeeded/);
    assert.equal(await readFile(join(root, 'put-many', 'data', 'hello.txt'), 'utf8'), 'hello\nworld\n');
  });

  it('ps lists a process started elsewhere and kill stops its tree', async () => {
    const exec = spawnCli(['exec', 'web01', '-n', '--', 'sh', '-c', 'sleep 60 & wait'], env);
    const done = collectChild(exec);
    let ps = await cli(['ps', 'web01'], env, SLOW);
    // Listed from its request on; `running` once the agent has its pid (the StartProcess Response).
    const listedRunning = () => /sh -c sleep 60 & wait/.test(ps.stdout) && / running /.test(ps.stdout);
    for (let i = 0; i < 100 && !listedRunning(); i++) {
      await new Promise((r) => setTimeout(r, 100));
      ps = await cli(['ps', 'web01'], env, SLOW);
    }
    assert.equal(ps.code, 0, ps.stderr);
    const line = ps.stdout.split('\n').find((l) => l.includes('sh -c sleep 60 & wait'));
    assert.ok(line, ps.stdout);
    assert.match(ps.stdout, /^ID +PID +SINCE +STATE +COMMAND$/m);
    const id = line.split(/\s+/)[0]!;
    assert.match(line, /running/);
    const kill = await cli(['kill', 'web01', id], env, SLOW);
    assert.equal(kill.code, 0, kill.stderr);
    assert.match(kill.stdout, new RegExp(`signalled ${id.replace('.', '\\.')} and its children`));
    const r = await done;
    assert.equal(r.code, 128 + 15, r.stderr);
    const again = await cli(['kill', 'web01', id], env, SLOW);
    assert.equal(again.code, 3);
    assert.match(again.stderr, /no running process .* of yours/);
  });

  it('exec --detach prints a handle; attach replays everything, then live, with the exit code; once', async () => {
    const d = await cli(
      ['exec', '--detach', 'web01', '--', 'sh', '-c', 'echo one; echo err >&2; sleep 1; echo two; exit 7'],
      env,
      SLOW,
    );
    assert.equal(d.code, 0, d.stderr);
    const handle = d.stdout.split('\n')[0]!;
    assert.match(handle, /^\d+\.\d+$/);
    assert.match(d.stdout, /outpost attach web01 \d+\.\d+/);
    const ps = await cli(['ps', 'web01', '--json'], env, SLOW);
    const listed = JSON.parse(ps.stdout) as { id: string; detached: boolean }[];
    assert.ok(
      listed.some((p) => p.id === handle && p.detached),
      ps.stdout,
    );
    // After it has finished: all of its output and its code.
    await new Promise((r) => setTimeout(r, 1500));
    const at = await cli(['attach', 'web01', handle], env, SLOW);
    assert.equal(at.code, 7, at.stderr);
    assert.equal(at.stdout, 'one\ntwo\n');
    assert.equal(at.stderr, 'err\n');
    const gone = await cli(['attach', 'web01', handle], env, SLOW);
    assert.equal(gone.code, 3);
    assert.match(gone.stderr, /is gone from web01/);
  });

  it('version, and a hosts file with a key that others can read is refused with the chmod', async () => {
    const v = await cli(['version', '--json'], env, SLOW);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(JSON.parse(v.stdout).version, (await import('../../src/agent/version.js')).AGENT_VERSION);
    const bad = join(root, 'leaky.toml');
    await writeFile(bad, `[hosts.x]\naddress = "127.0.0.1"\nkey = "${a.keyHex}"\n`, { mode: 0o644 });
    const r = await cli(['ping', 'x'], { OUTPOST_CONFIG: bad }, SLOW);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /readable by others \(mode 644\); make it private: chmod 600 .*leaky\.toml/);
    assert.doesNotMatch(r.stderr, new RegExp(a.keyHex));
  });
});
