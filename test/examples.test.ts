/**
 * Runs every example in examples/ against a real agent, confined to a temp
 * directory, with the agent's address and key passed through environment
 * variables — as a user would run them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ClientAgent, startClientAgent } from './client/helpers.js';
import { REPO_ROOT } from './helpers/agent.js';

function runExample(
  file: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(REPO_ROOT, 'examples', file), ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : null
          : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

describe('examples', () => {
  let env: ClientAgent;
  let vars: Record<string, string>;
  before(async () => {
    env = await startClientAgent();
    vars = {
      OUTPOST_HOST: env.agent.host,
      OUTPOST_PORT: String(env.agent.port),
      OUTPOST_KEY: env.agent.key!.toString('hex'),
    };
  });
  after(() => env?.stop());

  it('covers every example file', async () => {
    const files = (await readdir(join(REPO_ROOT, 'examples'))).filter((f) => f.endsWith('.ts')).sort();
    assert.deepEqual(files, ['deploy.ts', 'fanout.ts'], 'a new example needs a test here');
  });

  it('deploy.ts uploads a build, runs its installer, streams the log and checks the exit code', async () => {
    const build = join(env.root, 'build');
    await mkdir(join(build, 'lib'), { recursive: true });
    await writeFile(join(build, 'lib', 'app.js'), 'console.log("app")\n');
    await writeFile(join(build, 'install.sh'), 'echo installing\necho ok > installed.txt\necho done\n');
    const target = join(env.root, 'releases', '42');
    const ok = await runExample('deploy.ts', [], { ...vars, BUILD_DIR: build, TARGET_DIR: target });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /uploaded 2 files/);
    assert.match(ok.stdout, /\[install\] installing\n\[install\] done\n/);
    assert.match(ok.stdout, /deployed/);
    assert.equal(await readFile(join(target, 'installed.txt'), 'utf8'), 'ok\n');
    assert.equal(await readFile(join(target, 'lib', 'app.js'), 'utf8'), 'console.log("app")\n');

    await writeFile(join(build, 'install.sh'), 'echo broken >&2\nexit 4\n');
    const failed = await runExample('deploy.ts', [], {
      ...vars,
      BUILD_DIR: build,
      TARGET_DIR: join(env.root, 'r43'),
    });
    assert.notEqual(failed.code, 0);
    assert.match(failed.stderr, /broken/);
    assert.match(failed.stderr, /exit code 4/);
  });

  it('fanout.ts runs a command on several agents and reports each', async () => {
    const address = `${env.agent.host}:${env.agent.port}`;
    const r = await runExample('fanout.ts', ['echo', 'hi'], {
      ...vars,
      OUTPOST_AGENTS: `${address},${address},127.0.0.1:1`,
    });
    assert.equal(r.code, 1, 'one agent failed');
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.slice(0, 2), [`${address}: exit 0: hi`, `${address}: exit 0: hi`]);
    assert.match(lines[2] ?? '', /^127\.0\.0\.1:1: FAILED cannot connect/);
  });
});
