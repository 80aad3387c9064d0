#!/usr/bin/env node
// Runs every test file under test/ with node:test, TypeScript loaded through tsx.
// Node 20's --test does not expand globs, so the file list is built here.
// Usage: node scripts/run-tests.mjs [filter-substring ...]
// End-to-end tests spawn the built CLI (dist/), so dist/ is rebuilt first
// when any file under src/ is newer than it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function newest(dir, ext) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) t = Math.max(t, newest(p, ext));
    else if (name.endsWith(ext)) t = Math.max(t, st.mtimeMs);
  }
  return t;
}

const dist = join(root, 'dist');
if (!existsSync(join(dist, 'cli', 'main.js')) || newest(join(root, 'src'), '.ts') > newest(dist, '.js')) {
  console.error('run-tests: src/ is newer than dist/; building');
  const r = spawnSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) process.exit(r.status ?? 1);
}

const files = walk(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { cwd: root, stdio: 'inherit' },
);
child.on('exit', (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
