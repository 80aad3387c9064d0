/**
 * Fan-out: `outpost exec --hosts FILE` and `outpost put --hosts FILE` over
 * two real agents (different keys: one from OUTPOST_KEY, one from the hosts
 * file's `key=`) and one address where nothing listens.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliAgent, cli, closedPort, makeRoot, startCliAgent } from './helpers.js';

let root: string;
let one: CliAgent;
let two: CliAgent;
let env: NodeJS.ProcessEnv;
let allHosts: string;
let goodHosts: string;
let dead: string;

before(async () => {
  root = await makeRoot();
  [one, two] = await Promise.all([startCliAgent({ root }), startCliAgent({ root })]);
  env = { OUTPOST_KEY: one.keyHex };
  dead = `127.0.0.1:${await closedPort()}`;
  allHosts = join(root, 'hosts.txt');
  goodHosts = join(root, 'good.txt');
  await writeFile(
    allHosts,
    `# three hosts, one of them down\n${one.target}\n\n${two.target}   key=${two.keyHex}   # its own key\n${dead}\n`,
  );
  await writeFile(goodHosts, `${one.target}\n${two.target} key=${two.keyHex}\n`);
});
after(async () => {
  await Promise.all([one?.stop(), two?.stop()]);
  await rm(root, { recursive: true, force: true });
});

describe('fan-out', () => {
  it('exec runs on every host, prefixes lines, and the summary names the unreachable host (exit 4)', async () => {
    const r = await cli(
      [
        'exec',
        '--hosts',
        allHosts,
        '--cwd',
        root,
        '--',
        'sh',
        '-c',
        'echo "out $PPID"; echo err >&2; printf tail',
      ],
      env,
    );
    assert.equal(r.code, 4, r.stderr);
    const width = Math.max(one.target.length, two.target.length, dead.length) + 1;
    const prefix = (t: string) => `${`${t}:`.padEnd(width)} `;
    const outLines = r.stdout.trimEnd().split('\n').sort();
    assert.equal(outLines.length, 4, r.stdout);
    for (const t of [one.target, two.target]) {
      assert.ok(
        outLines.some((l) => l.startsWith(`${prefix(t)}out `)),
        `stdout has ${t}'s line, aligned`,
      );
      assert.ok(outLines.includes(`${prefix(t)}tail`), `${t}'s last line without a newline`);
      assert.ok(r.stderr.includes(`${prefix(t)}err\n`), `stderr has ${t}'s error line`);
    }
    assert.ok(!r.stdout.includes(dead));
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'NO_COLOR: no escape codes');

    const summary = r.stderr.slice(r.stderr.indexOf('\nHOST')).trim().split('\n');
    // Any width formatDuration prints (a loaded machine can take 10 s or a minute): 1.23 s, 12.3 s, 1m05s.
    const TIME = String.raw`(\d+\.\d\d? s|\d+m\d\ds|\d+h\d\dm)`;
    assert.match(summary[0]!, /^HOST +RESULT +TIME$/);
    assert.match(summary.find((l) => l.startsWith(one.target))!, new RegExp(`^\\S+ +exit 0 +${TIME}$`));
    assert.match(summary.find((l) => l.startsWith(two.target))!, new RegExp(`^\\S+ +exit 0 +${TIME}$`));
    assert.match(
      summary.find((l) => l.startsWith(dead))!,
      new RegExp(
        `^\\S+ +error: cannot connect to the agent at 127\\.0\\.0\\.1:\\d+ \\(connection refused\\) +${TIME}$`,
      ),
    );
    assert.equal(summary.at(-1), '1 of 3 hosts failed');
  });

  it('exec exits 0 only when every host exits 0; a non-zero exit is reported per host', async () => {
    const [ok, failing] = await Promise.all([
      cli(['exec', '--hosts', goodHosts, '--parallel', '1', '--cwd', root, '--', 'true'], env),
      cli(['exec', '--hosts', goodHosts, '--cwd', root, '--shell', '--', 'exit 5'], env),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /all 2 hosts succeeded\n$/);
    assert.equal(failing.code, 4);
    assert.equal(failing.stderr.match(/ exit 5 /g)?.length, 2, failing.stderr);
    assert.match(failing.stderr, /2 of 2 hosts failed\n$/);
  });

  it('put --hosts sends the same file to every host', async () => {
    const file = join(root, 'release.txt');
    await writeFile(file, 'v42\n');
    const r = await cli(['put', file, '--hosts', allHosts, join(root, 'dest') + '/'], env);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`^${one.target.replace(/\./g, '\\.')} +1 file, 4 B +`, 'm'));
    assert.match(r.stderr, new RegExp(`^${two.target.replace(/\./g, '\\.')} +1 file, 4 B +`, 'm'));
    assert.match(r.stderr, /1 of 3 hosts failed\n$/);
    // Both agents run on this machine with the same root: the file is there, whole.
    assert.equal(await readFile(join(root, 'dest', 'release.txt'), 'utf8'), 'v42\n');
  });
});
