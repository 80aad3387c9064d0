/**
 * Install (README, "Install on a server"): `npm pack` of the built tree,
 * installed into a temp `--prefix` with `npm install -g --offline` from the
 * local npm cache, then `outpost version` run from the prefix's bin. Where
 * the local cache lacks the dependencies (ENOTCACHED: a machine that never
 * downloaded them), the tarball is installed as npm would lay it out
 * (lib/node_modules/outpost + bin link) with the dependencies of this tree,
 * so the test still proves the tarball: its files, its bin and its dist.
 * Needs `dist` (npm test builds first).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { promisify } from 'node:util';
import { AGENT_VERSION } from '../../src/agent/version.js';
import { REPO_ROOT } from '../helpers/agent.js';

const run = promisify(execFile);
let dir: string | undefined;
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('npm pack → npm install -g --offline --prefix → outpost version', async () => {
  assert.ok(existsSync(join(REPO_ROOT, 'dist', 'cli', 'main.js')), 'dist is built (npm run build)');
  dir = await mkdtemp(join(tmpdir(), 'outpost-install-'));
  const env = {
    ...process.env,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  };
  const { stdout: packed } = await run(
    'npm',
    ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir],
    {
      cwd: REPO_ROOT,
      env,
    },
  );
  const tarball = join(dir, packed.trim().split('\n').pop()!);
  const prefix = join(dir, 'prefix');
  const bin = join(prefix, 'bin', 'outpost');
  try {
    await run('npm', ['install', '-g', '--offline', '--ignore-scripts', '--prefix', prefix, tarball], {
      env,
    });
  } catch (err) {
    const text = String((err as { stderr?: string }).stderr ?? err);
    assert.match(text, /ENOTCACHED/, `npm install failed for another reason than a cold cache:\n${text}`);
    // The layout npm makes, from the tarball, with this tree's dependencies.
    const pkg = join(prefix, 'lib', 'node_modules', 'outpost');
    await mkdir(pkg, { recursive: true });
    await run('tar', ['xzf', tarball, '-C', pkg, '--strip-components=1']);
    await symlink(join(REPO_ROOT, 'node_modules'), join(pkg, 'node_modules'));
    await mkdir(join(prefix, 'bin'), { recursive: true });
    // npm makes bin targets executable; so does this.
    await chmod(join(pkg, 'dist', 'cli', 'main.js'), 0o755);
    await symlink(join(pkg, 'dist', 'cli', 'main.js'), bin);
  }
  const { stdout } = await run(bin, ['version', '--json'], { env: { ...env, NO_COLOR: '1' } });
  assert.equal(JSON.parse(stdout).version, AGENT_VERSION);
});
