#!/usr/bin/env node
/**
 * CPU cost of Outpost's hot paths, for profiling work on a shared machine:
 * wall time swings with load, CPU seconds per unit of work barely do.
 *
 *   node bench/cpu.mjs [--size MIB] [--ops N] [--files N] [--modes none,aes,ssl] [--only transfer,output,smallops,files]
 *                       [--profile DIR]   (agent and hosts under --cpu-prof; see lib/prof-summary.mjs) [--keep]
 *   BENCH_AGENT_NODE_OPTIONS='--trace-gc' node bench/cpu.mjs --keep …   (flags for the agent and hosts only)
 *
 * For each mode it starts an agent (dist/, like bench/run.mjs), then reports
 * wall time and the CPU time (user + system) of the client (this process)
 * and of the agent and of its host processes (from /proc), per unit of work,
 * and the peak RSS each added during the work (sampled every 20 ms; the
 * session's host is already running, so this is buffers, not a boot).
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeSecrets, startAgent } from './lib/agents.mjs';
import { connect, endSession, spawnCount } from './lib/outpost.mjs';
import { installSignalHandlers, makeTempDir, processTree, runCleanups, treeRss } from './lib/util.mjs';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    ops: { type: 'string', default: '10000' },
    files: { type: 'string', default: '2000' },
    modes: { type: 'string', default: 'none,aes,ssl' },
    only: { type: 'string', default: 'transfer,output,smallops,files' },
    'no-sequential': { type: 'boolean', default: false },
    profile: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const sizeMiB = Number(values.size);
const ops = Number(values.ops);
const nFiles = Number(values.files);
const modes = values.modes.split(',');
const only = new Set(values.only.split(','));
const TICK_MS = 10; // USER_HZ = 100 on Linux

/** CPU ms of the agent process itself and of its descendants (hosts, and their children). */
function treeCpuMs(pid) {
  let own = 0;
  let rest = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime + stime, plus cutime + cstime: children reaped during the measurement count too.
      const t = Number(f[11]) + Number(f[12]) + (p === pid ? 0 : Number(f[13]) + Number(f[14]));
      if (p === pid) own += t;
      else rest += t;
    } catch {
      // gone
    }
  }
  return { agent: own * TICK_MS, hosts: rest * TICK_MS };
}

/** RSS (bytes) of the agent process itself and of its descendants. */
function rssSplit(pid) {
  const { parts } = treeRss(pid);
  const own = parts.find((p) => p.pid === pid)?.rss ?? 0;
  return { agent: own, hosts: parts.reduce((a, p) => a + p.rss, 0) - own };
}

async function measure(agent, fn) {
  const r0 = rssSplit(agent.pid);
  const peak = { ...r0, total: r0.agent + r0.hosts };
  // The sampler's own CPU (~0.5 ms per sample of /proc reads) is not the client's: it is subtracted.
  let samplerUs = 0;
  const sample = () => {
    const s0 = process.cpuUsage();
    const r = rssSplit(agent.pid);
    peak.agent = Math.max(peak.agent, r.agent);
    peak.hosts = Math.max(peak.hosts, r.hosts);
    peak.total = Math.max(peak.total, r.agent + r.hosts);
    const s = process.cpuUsage(s0);
    samplerUs += s.user + s.system;
  };
  const timer = setInterval(sample, 20);
  const c0 = process.cpuUsage();
  const a0 = treeCpuMs(agent.pid);
  const t0 = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const clientUs = c.user + c.system - samplerUs;
  const a = treeCpuMs(agent.pid);
  sample();
  const rss = {
    agent: peak.agent - r0.agent,
    hosts: peak.hosts - r0.hosts,
    total: peak.total - r0.agent - r0.hosts,
  };
  return {
    wall,
    client: clientUs / 1000,
    agent: a.agent - a0.agent,
    hosts: a.hosts - a0.hosts,
    rss,
  };
}

const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);

function row(label, r, units, unitName) {
  const per = (v) => ((v / units) * (unitName === 'op' || unitName === 'file' ? 1000 : 1)).toFixed(2);
  const unitLabel = unitName === 'op' || unitName === 'file' ? `µs/${unitName}` : `ms/${unitName}`;
  console.log(
    `| ${label} | ${r.wall.toFixed(0)} ms | ${per(r.client)} | ${per(r.agent)} | ${per(r.hosts)} | ${per(r.client + r.agent + r.hosts)} | ${unitLabel} | ${mib(r.rss.agent)} / ${mib(r.rss.hosts)} / ${mib(r.rss.total)} |`,
  );
}

installSignalHandlers();
const dir = makeTempDir('outpost-cpu-', { keep: values.keep });
if (values.keep) console.log(`temp dir (kept): ${dir}`);
try {
  const secrets = await makeSecrets(dir);
  const data = join(dir, 'data');
  mkdirSync(data);
  const src = join(data, 'src.bin');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  // Written a MiB at a time: a 4 GiB run must not hold 4 GiB here.
  const fd = openSync(src, 'w');
  for (let i = 0; i < sizeMiB; i++) writeSync(fd, chunk);
  closeSync(fd);
  const tree = join(data, 'tree');
  for (let i = 0; i < nFiles; i++) {
    const d = join(tree, `d${i % 50}`);
    if (i < 50) mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}`), chunk.subarray(0, 1024));
  }
  console.log(
    '| work | wall | client | agent | hosts | total | unit | peak RSS added, MiB: agent / hosts / both |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const mode of modes) {
    const agent = await startAgent({
      dir,
      mode,
      secrets,
      allowedRoots: [dir], // the product root paths (a process's default cwd) live in dir too
      ...(values.profile ? { profileDir: join(values.profile, mode) } : {}),
    });
    const client = await connect(agent);
    await client.exists(join(data, 'warm'));
    if (only.has('transfer')) {
      row(
        `${mode} upload ${sizeMiB} MiB`,
        await measure(agent, () => client.upload(src, join(data, `up-${mode}.bin`), { verify: false })),
        sizeMiB,
        'MiB',
      );
      row(
        `${mode} download ${sizeMiB} MiB`,
        await measure(agent, () =>
          client.download(join(data, `up-${mode}.bin`), join(data, `down-${mode}.bin`), { verify: false }),
        ),
        sizeMiB,
        'MiB',
      );
      // Room on tmpfs for the next mode's copies (4 GiB runs).
      rmSync(join(data, `up-${mode}.bin`), { force: true });
      rmSync(join(data, `down-${mode}.bin`), { force: true });
    }
    if (only.has('output')) {
      const bytes = sizeMiB * 1024 * 1024;
      row(
        `${mode} process output ${sizeMiB} MiB`,
        await measure(agent, async () => {
          const got = await spawnCount(client, '/usr/bin/head', ['-c', String(bytes), '/dev/zero']);
          if (got !== bytes) throw new Error(`process output: got ${got} bytes, expected ${bytes}`);
        }),
        sizeMiB,
        'MiB',
      );
    }
    if (only.has('smallops')) {
      const target = join(data, 'src.bin');
      if (!values['no-sequential'])
        row(
          `${mode} exists × ${ops}, sequential`,
          await measure(agent, async () => {
            for (let i = 0; i < ops; i++) await client.exists(target);
          }),
          ops,
          'op',
        );
      row(
        `${mode} exists × ${ops}, 64 in flight`,
        await measure(agent, async () => {
          let next = 0;
          await Promise.all(
            Array.from({ length: 64 }, async () => {
              while (next++ < ops) await client.exists(target);
            }),
          );
        }),
        ops,
        'op',
      );
    }
    if (only.has('files')) {
      row(
        `${mode} upload ${nFiles} × 1 KiB`,
        await measure(agent, () =>
          client.upload(tree, join(data, `tree-${mode}`), { concurrency: 64, verify: false }),
        ),
        nFiles,
        'file',
      );
    }
    await endSession(client);
    await agent.stop();
  }
} finally {
  await runCleanups();
}
