/**
 * Deploys (issue 15), against OpenSSH in the same run: a tree of N small
 * files (default 10,000 × 1 KiB) —
 *
 * - put of the whole tree: `outpost put` (CLI, one archive stream +
 *   outpost.extract) vs `tar c | ssh tar x`;
 * - sync of the unchanged tree: `outpost sync` (CLI, one manifest request)
 *   vs `rsync -a` over ssh; and the SDK's agent.sync() on an open connection;
 * - sync after 1 % of the files changed: `outpost sync` vs `rsync -a`.
 *
 * Each variant has its own source and target trees, so interleaved runs
 * (A B A B …) do not feed each other's changes. rsync is needed on this
 * machine (the section reports it missing otherwise; `apt-get install -y
 * rsync`). Run through bench/run.mjs: `node bench/run.mjs --only deploy`.
 */
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI } from './lib/agents.mjs';
import * as op from './lib/outpost.mjs';
import { countFiles, msSince, nowNs, run } from './lib/util.mjs';

const CIPHER = 'aes128-gcm@openssh.com';

async function makeTree(dir, files, size) {
  const blob = (await import('node:crypto')).randomBytes(size * Math.min(files, 1000));
  for (let i = 0; i < files; i++) {
    const d = join(dir, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) await mkdir(d, { recursive: true });
    const off = (i % 1000) * size;
    await writeFile(join(d, `f${String(i).padStart(5, '0')}.bin`), blob.subarray(off, off + size));
  }
}

/** Rewrites `count` files of `dir` (different ones each round) with new bytes. */
async function touch(dir, files, size, count, round) {
  const step = Math.max(1, Math.floor(files / count));
  for (let k = 0; k < count; k++) {
    const i = (k * step + round) % files;
    const p = join(
      dir,
      `d${String(Math.floor(i / 100)).padStart(3, '0')}`,
      `f${String(i).padStart(5, '0')}.bin`,
    );
    await writeFile(p, Buffer.alloc(size, (round + 1) & 0xff));
  }
}

async function timed(fn) {
  const t = nowNs();
  await fn();
  return msSince(t);
}

/**
 * The section. `ctx` is bench/run.mjs's Context; `interleave` and `log` are
 * its helpers. Returns the medians in ms (and files/s for put).
 */
export async function benchDeploy(ctx, { interleave, log }) {
  const { o, sshd } = ctx;
  const files = o.files;
  const size = o.fileSize;
  const agent = await ctx.agent('aes');
  const rsync = await run('rsync', ['--version'], { check: false }).catch(() => null);
  const haveRsync = rsync?.code === 0;
  if (!haveRsync) log('deploy: rsync is not installed here: the rsync comparisons are left out');
  const env = { ...process.env, OUTPOST_KEY: ctx.secrets.aesKeyHex, NO_COLOR: '1' };
  const remote = (p) => `127.0.0.1:${agent.port}:${p}`;
  const cli = (args) => run(process.execPath, [CLI, ...args], { env });
  const sshE = ['ssh', ...sshd.sshArgs(CIPHER)].join(' ');
  const rsyncTo = (src, dst) => run('rsync', ['-a', '-e', sshE, `${src}/`, `${sshd.target}:${dst}/`]);
  const q = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

  const base = join(ctx.data, 'deploy-src');
  log(`deploy: making ${files} files of ${size} bytes`);
  await makeTree(base, files, size);
  const res = { files, fileSize: size, rsync: haveRsync ? rsync.stdout.split('\n')[0] : null };

  // ---- put of the whole tree (files/s)
  let n = 0;
  const put = (name, label, fn) => ({
    name,
    label,
    unit: 'files/s',
    run: async () => {
      const dst = join(ctx.data, `deploy-put-${++n}`);
      try {
        const ms = await timed(() => fn(dst));
        const got = await countFiles(dst);
        if (got !== files) throw new Error(`${dst}: ${got} files, expected ${files}`);
        return files / (ms / 1000);
      } finally {
        await rm(dst, { recursive: true, force: true });
      }
    },
  });
  res.put = await interleave(
    'deploy put',
    [
      put('outpost-cli', 'outpost put (CLI, AES)', (dst) => cli(['put', '-q', base, remote(dst)])),
      put('outpost-sdk', 'agent.uploadArchive (SDK, cold, AES)', (dst) =>
        op.cold(agent, (c) => c.uploadArchive(base, dst)),
      ),
      put('tar-ssh', 'tar c | ssh tar x (aes128-gcm)', (dst) =>
        run('/bin/sh', [
          '-c',
          `tar cf - -C ${q(base)} . | ${sshE} ${sshd.target} ${q(`mkdir -p ${q(dst)} && tar xf - -C ${q(dst)}`)}`,
        ]),
      ),
    ],
    o.repeats,
  );

  // ---- each sync variant: its own source copy and target, synced once before timing
  const prepare = async (name) => {
    const src = join(ctx.data, `deploy-${name}-src`);
    const dst = join(ctx.data, `deploy-${name}-dst`);
    await cp(base, src, { recursive: true, preserveTimestamps: true });
    return { src, dst };
  };
  const o1 = await prepare('o-cli');
  await cli(['sync', '-q', o1.src, remote(o1.dst)]);
  const o2 = await prepare('o-sdk');
  const client = await op.connect(agent);
  await client.sync(o2.src, o2.dst);
  const r1 = haveRsync ? await prepare('rsync') : null;
  if (r1) await rsyncTo(r1.src, r1.dst);

  const ms = (name, label, fn) => ({ name, label, unit: 'ms', run: (round) => fn(round) });
  const unchanged = [
    ms('outpost-cli', 'outpost sync (CLI, AES)', async () => {
      const t = nowNs();
      const r = await cli(['sync', o1.src, remote(o1.dst)]);
      const took = msSince(t);
      if (!/sent 0 files/.test(r.stdout)) throw new Error(`not a no-op: ${r.stdout.trim()}`);
      return took;
    }),
    ms('outpost-sdk', 'agent.sync (SDK, open connection, AES)', async () => {
      const t = nowNs();
      const r = await client.sync(o2.src, o2.dst);
      const took = msSince(t);
      if (r.uploaded.length !== 0) throw new Error(`not a no-op: ${r.uploaded.length} sent`);
      return took;
    }),
  ];
  if (r1)
    unchanged.push(ms('rsync', 'rsync -a over ssh (aes128-gcm)', () => timed(() => rsyncTo(r1.src, r1.dst))));
  res.unchanged = await interleave('deploy sync unchanged', unchanged, Math.max(o.repeats, 3));

  // ---- 1 % changed
  const count = Math.max(1, Math.round(files / 100));
  const changed = [
    ms('outpost-cli', `outpost sync, ${count} changed (CLI, AES)`, async (round) => {
      await touch(o1.src, files, size, count, round + 1);
      const t = nowNs();
      const r = await cli(['sync', o1.src, remote(o1.dst)]);
      const took = msSince(t);
      if (!new RegExp(`sent ${count} files`).test(r.stdout))
        throw new Error(`unexpected: ${r.stdout.trim()}`);
      return took;
    }),
    ms('outpost-sdk', `agent.sync, ${count} changed (SDK, open connection)`, async (round) => {
      await touch(o2.src, files, size, count, round + 1);
      const t = nowNs();
      const r = await client.sync(o2.src, o2.dst);
      const took = msSince(t);
      if (r.uploaded.length !== count) throw new Error(`${r.uploaded.length} sent, expected ${count}`);
      return took;
    }),
  ];
  if (r1)
    changed.push(
      ms('rsync', `rsync -a, ${count} changed (aes128-gcm)`, async (round) => {
        await touch(r1.src, files, size, count, round + 1);
        return timed(() => rsyncTo(r1.src, r1.dst));
      }),
    );
  res.changed = await interleave('deploy sync 1%', changed, Math.max(o.repeats, 3));
  res.changedFiles = count;
  await op.endSession(client);
  for (const p of [base, o1.src, o1.dst, o2.src, o2.dst, r1?.src, r1?.dst])
    if (p) await rm(p, { recursive: true, force: true });
  return res;
}

/** Targets of the section (issue 15), in bench/run.mjs's shape. */
export function deployTargets(d, { ratio, absolute, pick }) {
  if (!d || d.error) return;
  ratio(
    'deploy-put',
    `put of ${d.files} × ${d.fileSize} B vs tar | ssh tar x`,
    pick(d.put['outpost-cli']),
    pick(d.put['tar-ssh']),
    '≥',
    1.5,
    'files/s',
  );
  const u = d.unchanged;
  absolute(
    'deploy-noop-cli',
    `sync of an unchanged ${d.files}-file tree (CLI)`,
    u['outpost-cli']?.median,
    '≤',
    500,
    'ms',
  );
  absolute(
    'deploy-noop-sdk',
    `sync of an unchanged ${d.files}-file tree (SDK, open connection)`,
    u['outpost-sdk']?.median,
    '≤',
    100,
    'ms',
  );
  // Times: smaller is better, so rsync / outpost is the speed-up.
  const speedup = (id, what, mine, theirs, threshold) =>
    ratio(
      id,
      what,
      theirs && { value: theirs.median, label: theirs.label },
      mine && { value: mine.median, label: mine.label },
      '≥',
      threshold,
      '×',
    );
  if (u.rsync)
    speedup(
      'deploy-noop-rsync',
      'unchanged tree: rsync time / outpost sync (CLI) time',
      u['outpost-cli'],
      u.rsync,
      1,
    );
  if (d.changed.rsync)
    speedup(
      'deploy-changed-rsync',
      `${d.changedFiles} changed: rsync time / outpost sync (CLI) time`,
      d.changed['outpost-cli'],
      d.changed.rsync,
      2,
    );
}

/** The section's Markdown (variant rows of bench/run.mjs). */
export function deployMarkdown(d, { table, variantRows, fmt }) {
  if (!d || d.error) return [];
  const out = [];
  out.push('', `## Deploys: ${d.files} files of ${d.fileSize} B`, '');
  out.push(
    'put of the whole tree (files/s):',
    '',
    table(['variant', 'median', 'min', 'max', 'vs tar|ssh'], variantRows(d.put, d.put['tar-ssh']?.median)),
  );
  out.push(
    '',
    'sync of the unchanged tree (ms, lower is better):',
    '',
    table(['variant', 'median', 'min', 'max', '–'], variantRows(d.unchanged)),
  );
  out.push(
    '',
    `sync after ${d.changedFiles} files changed (ms, lower is better):`,
    '',
    table(['variant', 'median', 'min', 'max', '–'], variantRows(d.changed)),
  );
  if (!d.rsync) out.push('', '_rsync is not installed on this machine: the rsync rows are missing._');
  else out.push('', `_${d.rsync}; ${fmt(d.files)} files_`);
  return out;
}
