/**
 * `npm run stress` module: soak. 10 minutes (--quick: 30 s) of mixed load
 * from 8 clients against one agent (started as the stress suite starts
 * them: unprivileged when root, AllowedRoots = its own directory):
 * uploads, downloads, exists/stat, exec with output, listings, small
 * whole-file writes and reads, and every few hundred operations a client
 * ends its session and connects again. Agent and host RSS and descriptor
 * counts are sampled every few seconds; the slope after warm-up is the
 * figure (goal: flat), with the error count and what is left once the load
 * stops.
 *
 *   import('./bench/stress/soak.mjs').then((m) => m.run({ quick, tmp, log }))
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeSecrets } from '../lib/agents.mjs';
import { fmt, sleep } from '../lib/util.mjs';
import {
  connectTo,
  kindOf,
  MiB,
  row,
  sampleAgent,
  slopePerMinute,
  startFaultAgent,
  waitFor,
} from './lib/agent-faults.mjs';

const CLIENTS = 8;
/** A client ends its session and connects again after this many operations. */
const OPS_PER_SESSION = 300;
/** Upper bound on operations per client, whatever the duration. */
const MAX_OPS_PER_CLIENT = 1_000_000;
const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Local payloads: one per size (a 2 MiB one goes through a handle, the rest whole). */
function payloads(dir) {
  return [4 * 1024, 64 * 1024, 512 * 1024, 2 * MiB].map((size, k) => {
    const data = randomBytes(size);
    const file = join(dir, `payload-${k}.bin`);
    writeFileSync(file, data);
    return { file, size, sha: sha(data) };
  });
}

/** The operation mix; each throws when the agent's answer is wrong. */
function operations(remoteDir, localDir, files) {
  const remote = (k) => join(remoteDir, `p${k}.bin`);
  let n = 0;
  return [
    async (c) => {
      const k = n++ % files.length;
      await c.upload(files[k].file, remote(k), { verify: false });
    },
    async (c) => {
      const k = n++ % files.length;
      if (!(await c.exists(remote(k)))) return; // not uploaded yet in this session's dir
      const local = join(localDir, `d${k}.bin`);
      await c.download(remote(k), local, { verify: false });
      if (sha(readFileSync(local)) !== files[k].sha) throw new Error(`download of p${k} differs`);
    },
    async (c) => {
      const k = n++ % files.length;
      if (await c.exists(remote(k))) {
        const st = await c.stat(remote(k));
        if (st.size !== files[k].size)
          throw new Error(`stat of p${k}: size ${st.size}, expected ${files[k].size}`);
      }
    },
    async (c) => {
      const r = await c.exec('/bin/sh', ['-c', 'seq 1 2000; echo done >&2']);
      if (r.code !== 0 || r.stdout.length !== 8893 || r.stderr.toString() !== 'done\n')
        throw new Error(`exec: code ${r.code}, ${r.stdout.length} bytes of stdout`);
    },
    async (c) => {
      await c.list(remoteDir);
    },
    async (c) => {
      const data = randomBytes(4096);
      const p = join(remoteDir, 'small.bin');
      await c.writeFile(p, data);
      const back = await c.readFile(p);
      if (!back.equals(data)) throw new Error('small write/read differs');
    },
  ];
}

async function client(agent, w, files, dir, deadline, stats) {
  const remoteDir = join(agent.root, `c${w}`);
  const localDir = join(dir, `dl-${w}`);
  mkdirSync(localDir, { recursive: true });
  const ops = operations(remoteDir, localDir, files);
  let c = null;
  for (let i = 0; i < MAX_OPS_PER_CLIENT && Date.now() < deadline; i++) {
    try {
      if (c === null) {
        c = await connectTo(agent);
        await c.mkdir(remoteDir);
      }
      await ops[(i + w) % ops.length](c);
      stats.ops++;
      if ((i + 1) % OPS_PER_SESSION === 0) {
        await c.closeSession();
        c = null;
        stats.sessions++;
      }
    } catch (err) {
      stats.errors++;
      if (stats.samples.length < 5)
        stats.samples.push(`${kindOf(err)}: ${String(err?.message ?? err).slice(0, 160)}`);
      await c?.close().catch(() => {});
      c = null;
      await sleep(100);
    }
  }
  if (c) await c.closeSession().catch(() => {});
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : Number.NaN;
};

/** Runs the soak; returns rows { section, figure, value, goal, met }. */
export async function run(ctx) {
  const durationMs = ctx.quick ? 30_000 : 10 * 60_000;
  const warmupMs = ctx.quick ? 10_000 : 2 * 60_000;
  const everyMs = ctx.quick ? 1000 : 5000;
  mkdirSync(ctx.tmp, { recursive: true });
  const dir = mkdtempSync(join(ctx.tmp, 'soak-'));
  const secrets = await makeSecrets(dir);
  const agent = await startFaultAgent({ dir: ctx.tmp, secrets });
  ctx.log(`soak: agent pid ${agent.pid} as ${agent.user}; ${CLIENTS} clients for ${durationMs / 1000} s`);
  try {
    const files = payloads(dir);
    const idle = sampleAgent(agent.pid);
    const stats = { ops: 0, errors: 0, sessions: 0, samples: [] };
    const series = [];
    const t0 = Date.now();
    const deadline = t0 + durationMs;
    const sampler = setInterval(
      () => series.push({ t: Date.now() - t0, ...sampleAgent(agent.pid) }),
      everyMs,
    );
    let lastLog = t0;
    const progress = setInterval(() => {
      if (Date.now() - lastLog < 60_000) return;
      lastLog = Date.now();
      const s = series.at(-1);
      ctx.log(
        `soak: ${Math.round((Date.now() - t0) / 1000)} s, ${stats.ops} ops, ${stats.errors} errors, agent ${fmt(s.agentRss / MiB)} MiB / ${s.agentFds} fds, ${s.hosts} hosts`,
      );
    }, 5000);
    try {
      await Promise.all(
        Array.from({ length: CLIENTS }, (_, w) => client(agent, w, files, dir, deadline, stats)),
      );
    } finally {
      clearInterval(sampler);
      clearInterval(progress);
    }
    const elapsed = Date.now() - t0;
    // After the load: sessions were ended, so hosts should go and descriptors return.
    await waitFor(() => sampleAgent(agent.pid).hosts <= idle.hosts + 1, 15_000, 250);
    const after = sampleAgent(agent.pid);
    const warm = series.filter((s) => s.t >= warmupMs);
    // The samples themselves go to the run's JSON (the runner's `details`), for a plot or a second look.
    if (ctx.details)
      ctx.details.soak = { everyMs, warmupMs, idle, after, series, errorSamples: stats.samples };
    const slope = (key, scale = 1) => slopePerMinute(warm.map((s) => ({ t: s.t, v: s[key] / scale })));
    const span = (key, scale = 1) => {
      const a = median(warm.slice(0, 3).map((s) => s[key] / scale));
      const b = median(warm.slice(-3).map((s) => s[key] / scale));
      return `${fmt(a)} → ${fmt(b)}`;
    };
    const S = `soak: ${CLIENTS} clients, ${Math.round(elapsed / 1000)} s (slopes after ${warmupMs / 1000} s warm-up, ${warm.length} samples)`;
    const agentRss = slope('agentRss', MiB);
    const hostRss = slope('hostRss', MiB);
    const agentFds = slope('agentFds');
    const hostFds = slope('hostFds');
    // 30 s (--quick) is too short to tell a slope from GC noise: shown, not judged.
    const judge = (ok) => (ctx.quick ? null : ok);
    const unjudged = ctx.quick ? '; --quick: too short to judge' : '';
    // Descriptors move with the requests in flight at the sampling instant: < 1 per minute is flat.
    return [
      row(
        S,
        'operations',
        `${stats.ops} (${fmt(stats.ops / (elapsed / 1000))}/s, ${stats.sessions} sessions ended and reopened)`,
        '—',
        stats.ops > 0,
      ),
      row(
        S,
        'errors',
        `${stats.errors}${stats.samples.length ? ` (${stats.samples.join(' | ')})` : ''}`,
        '0',
        stats.errors === 0,
      ),
      row(
        S,
        'agent RSS slope',
        `${fmt(agentRss)} MiB/min (${span('agentRss', MiB)} MiB)${unjudged}`,
        '< 1 MiB/min',
        judge(agentRss < 1),
      ),
      row(
        S,
        'host RSS slope (all hosts)',
        `${fmt(hostRss)} MiB/min (${span('hostRss', MiB)} MiB)${unjudged}`,
        '< 1 MiB/min',
        judge(hostRss < 1),
      ),
      row(
        S,
        'agent FD slope',
        `${fmt(agentFds)} FD/min (${span('agentFds')})${unjudged}`,
        '< 1 FD/min (flat)',
        judge(agentFds < 1),
      ),
      row(
        S,
        'host FD slope (all hosts)',
        `${fmt(hostFds)} FD/min (${span('hostFds')})${unjudged}`,
        '< 1 FD/min (flat)',
        judge(hostFds < 1),
      ),
      row(
        S,
        'after the load (idle → after)',
        `hosts ${idle.hosts} → ${after.hosts}, agent FDs ${idle.agentFds} → ${after.agentFds}, agent RSS ${fmt(idle.agentRss / MiB)} → ${fmt(after.agentRss / MiB)} MiB`,
        'hosts and FDs back to idle (+1 spare host)',
        after.hosts <= idle.hosts + 1 && after.agentFds <= idle.agentFds + 3,
      ),
    ];
  } finally {
    await agent.stop();
  }
}
