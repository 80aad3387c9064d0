/**
 * `outpost exec` against a real agent: exit codes pass through, stdout and
 * stderr stay apart, local stdin reaches the remote command, Ctrl-C ends the
 * remote process tree.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliAgent, cli, collectChild, spawnCli, startCliAgent } from './helpers.js';

let a: CliAgent;
let env: NodeJS.ProcessEnv;
before(async () => {
  a = await startCliAgent();
  env = { OUTPOST_KEY: a.keyHex };
});
after(() => a.stop());

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True while `pid` is a live (not zombie) process. */
async function alive(pid: number): Promise<boolean> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/.test(s);
  } catch {
    return false;
  }
}

describe('outpost exec', () => {
  it('passes the exit code through and keeps stdout and stderr apart', async () => {
    const [r, killed, cwdEnv] = await Promise.all([
      cli(['exec', a.target, '--', 'sh', '-c', 'echo to-out; echo to-err >&2; echo more-out; exit 7'], env),
      cli(['exec', a.target, '-n', '--', 'sh', '-c', 'kill -TERM $$'], env),
      cli(
        [
          'exec',
          a.target,
          '-n',
          '--cwd',
          a.root,
          '--env',
          'GREETING=hi there',
          '-e',
          'X=1',
          '--shell',
          '--',
          'echo "$GREETING $X $(pwd)"',
        ],
        env,
      ),
    ]);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'to-out\nmore-out\n');
    assert.equal(r.stderr, 'to-err\n');
    assert.equal(killed.code, 128 + 15, 'killed by SIGTERM: 128+15');
    assert.equal(cwdEnv.code, 0, cwdEnv.stderr);
    assert.equal(cwdEnv.stdout, `hi there 1 ${a.root}\n`);
  });

  it('pipes local stdin to the remote command; its end closes the remote stdin', async () => {
    const input = randomBytes(300 * 1024).toString('base64'); // several chunks
    const child = spawnCli(['exec', a.target, '--', 'sh', '-c', 'cat; echo "<eof>" >&2'], env);
    const done = collectChild(child);
    child.stdin!.end(input);
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, input.length);
    assert.ok(r.stdout === input, 'what came back is what was sent');
    assert.equal(r.stderr, '<eof>\n');
  });

  it('Ctrl-C terminates the remote process tree and exits 130', async () => {
    const pidFile = join(a.root, 'sleeper.pid');
    const child = spawnCli(
      ['exec', a.target, '-n', '--', 'sh', '-c', `sleep 300 & echo $! > ${pidFile}; echo started; wait`],
      env,
    );
    const done = collectChild(child);
    let out = '';
    child.stdout!.on('data', (d: string) => (out += d));
    for (let i = 0; i < 200 && !out.includes('started'); i++) await delay(50);
    assert.equal(out, 'started\n');
    const sleeper = Number(await readFile(pidFile, 'utf8'));
    assert.ok(await alive(sleeper), 'the remote grandchild runs');
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 130, r.stderr);
    for (let i = 0; i < 100 && (await alive(sleeper)); i++) await delay(50);
    assert.equal(await alive(sleeper), false, 'the grandchild (sleep) is gone');
  });

  it('a program that cannot start is a remote error (exit 3) with advice', async () => {
    const r = await cli(['exec', a.target, '-n', '--', 'outpost-no-such-program'], env);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^outpost: NotFound: .*outpost-no-such-program.*; check the program name/);
  });
});
