#!/usr/bin/env node
/**
 * Outpost against OpenSSH, measured side by side in one run.
 *
 *   npm run build && node bench/run.mjs [--quick] [--only transfer,files,...] [options]
 *
 * Starts a private sshd and Outpost agents (none, ssl, aes) on 127.0.0.1,
 * runs every comparison interleaved (A B A B …), prints a Markdown table with
 * each target met or missed, and writes bench/results/<timestamp>.json.
 * Everything it starts is stopped, and its temp dir removed, however it ends.
 * See docs/BENCHMARKS.md.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDeploy, deployMarkdown, deployTargets } from './deploy.mjs';
import { CLI, makeSecrets, startAgent } from './lib/agents.mjs';
import * as op from './lib/outpost.mjs';
import { ensureOpenSsh, startSshd, versions } from './lib/sshd.mjs';
import { startTcpPeer, tcpGet, tcpPut } from './lib/tcp.mjs';
import {
  countFiles,
  fmt,
  GiB,
  installSignalHandlers,
  MiB,
  makeTempDir,
  mapLimit,
  median,
  msSince,
  nowNs,
  percentile,
  run,
  runCleanups,
  sampleRss,
  sh,
  sleep,
  summarize,
  treeRss,
} from './lib/util.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SECTIONS = ['transfer', 'files', 'exec', 'smallops', 'output', 'memory', 'fanout', 'deploy'];
const CIPHERS = ['aes256-ctr', 'aes128-gcm@openssh.com', 'chacha20-poly1305@openssh.com'];
const SHORT = {
  'aes256-ctr': 'aes256-ctr',
  'aes128-gcm@openssh.com': 'aes128-gcm',
  'chacha20-poly1305@openssh.com': 'chacha20',
};
const MODES = ['none', 'ssl', 'aes'];
const MODE_LABEL = { none: 'Outpost none', ssl: 'Outpost TLS', aes: 'Outpost AES-256' };

// ------------------------------------------------------------------ options

const HELP = `usage: node bench/run.mjs [options]

  --quick              small sizes, 1 repeat (64 MiB, 1,000 files, fewer iterations)
  --only LIST          run only these sections (comma-separated, repeatable):
                       ${SECTIONS.join(', ')}
  --repeats N          repeats of each interleaved measurement (default 3; quick 1)
  --size MIB           bulk transfer / process output size in MiB (default 1024; quick 64)
  --files N            small-file count (default 10000; quick 1000)
  --file-size BYTES    small-file size (default 1024)
  --exec-iters N       warm remote-true iterations (default 200; quick 30)
  --cold-iters N       cold connect+exec iterations (default 40; quick 8)
  --ops N              small operations per run (default 20000; quick 2000)
  --conns N            idle connections in the memory test (default 1000; quick 200)
  --agents N           agents in the fan-out test (default 100; quick 20)
  --concurrency N      files in flight for the Outpost directory upload (default 64)
  --profile            run the agents (and their hosts) under node --cpu-prof;
                       profiles go to bench/results/prof-<timestamp>/
  --keep               keep the temp dir (its path is printed)
  --help
`;

function parseOptions(argv) {
  const o = {
    quick: false,
    only: [],
    repeats: undefined,
    sizeMiB: undefined,
    files: undefined,
    fileSize: 1024,
    execIters: undefined,
    coldIters: undefined,
    ops: undefined,
    conns: undefined,
    agents: undefined,
    concurrency: 64,
    profile: false,
    keep: false,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} needs a positive number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith('--') && a.includes('=') ? a.split(/=(.*)/s) : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      i++;
      if (i >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[i];
    };
    switch (flag) {
      case '--quick':
        o.quick = true;
        break;
      case '--only':
        for (const s of value().split(',')) {
          const n = s.trim();
          if (!n) continue;
          if (!SECTIONS.includes(n))
            throw new Error(`--only: unknown section "${n}" (one of ${SECTIONS.join(', ')})`);
          o.only.push(n);
        }
        break;
      case '--repeats':
        o.repeats = Math.round(num(flag, value()));
        break;
      case '--size':
        o.sizeMiB = num(flag, value());
        break;
      case '--files':
        o.files = Math.round(num(flag, value()));
        break;
      case '--file-size':
        o.fileSize = Math.round(num(flag, value()));
        break;
      case '--exec-iters':
        o.execIters = Math.round(num(flag, value()));
        break;
      case '--cold-iters':
        o.coldIters = Math.round(num(flag, value()));
        break;
      case '--ops':
        o.ops = Math.round(num(flag, value()));
        break;
      case '--conns':
        o.conns = Math.round(num(flag, value()));
        break;
      case '--agents':
        o.agents = Math.round(num(flag, value()));
        break;
      case '--concurrency':
        o.concurrency = Math.round(num(flag, value()));
        break;
      case '--profile':
        o.profile = true;
        break;
      case '--keep':
        o.keep = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n\n${HELP}`);
    }
  }
  const q = o.quick;
  o.repeats ??= q ? 1 : 3;
  o.sizeMiB ??= q ? 64 : 1024;
  o.files ??= q ? 1000 : 10_000;
  o.execIters ??= q ? 30 : 200;
  o.coldIters ??= q ? 8 : 40;
  o.ops ??= q ? 2000 : 20_000;
  o.conns ??= q ? 200 : 1000;
  o.agents ??= q ? 20 : 100;
  o.sections = o.only.length ? SECTIONS.filter((s) => o.only.includes(s)) : SECTIONS;
  return o;
}

// ------------------------------------------------------------------ helpers

const t0Run = Date.now();
function log(msg) {
  const s = ((Date.now() - t0Run) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${msg}\n`);
}

/** POSIX shell quoting. */
const q = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;

async function withFd(path, flags, fn) {
  const fd = openSync(path, flags);
  try {
    return await fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** Times `fn`; when it returns a number, that is its own (narrower) timing in ms and is used instead. */
async function timeMs(fn) {
  const t = nowNs();
  const r = await fn();
  return typeof r === 'number' ? r : msSince(t);
}

/** An Outpost cold operation's own timing (connect … done, without the session teardown). */
const coldMs = (agent, fn) => op.cold(agent, fn).then((r) => r.ms);

function checkSize(path, size) {
  const st = statSync(path);
  if (st.size !== size) throw new Error(`${path}: ${st.size} bytes, expected ${size}`);
}

/**
 * Runs each variant once per round, in order, `repeats` rounds (A B A B …).
 * A variant's `run(round)` returns its metric. A variant that throws is
 * recorded with its error and not run again.
 */
async function interleave(section, variants, repeats) {
  const out = {};
  for (const v of variants) out[v.name] = { label: v.label, samples: [], error: null };
  for (let r = 0; r < repeats; r++) {
    for (const v of variants) {
      const rec = out[v.name];
      if (rec.error) continue;
      try {
        const value = await v.run(r);
        rec.samples.push(value);
        log(`${section}: ${v.label} #${r + 1}: ${fmt(value)} ${v.unit ?? ''}`);
      } catch (err) {
        rec.error = String(err?.message ?? err).slice(0, 1000);
        log(`${section}: ${v.label} FAILED: ${rec.error}`);
      }
    }
  }
  for (const rec of Object.values(out)) Object.assign(rec, summarize(rec.samples));
  return out;
}

function latencyStats(ms) {
  return {
    n: ms.length,
    p50: percentile(ms, 50),
    p95: percentile(ms, 95),
    p99: percentile(ms, 99),
    min: ms.length ? Math.min(...ms) : Number.NaN,
    max: ms.length ? Math.max(...ms) : Number.NaN,
    mean: ms.length ? ms.reduce((a, b) => a + b, 0) / ms.length : Number.NaN,
  };
}

// ------------------------------------------------------------------ context

class Context {
  constructor(o) {
    this.o = o;
    this.tmp = makeTempDir('outpost-bench-', { keep: o.keep });
    this.data = join(this.tmp, 'data');
    mkdirSync(this.data, { recursive: true });
    this.agents = {};
    this.profileDir = null;
  }

  async init() {
    this.secrets = await makeSecrets(this.tmp);
    this.sshd = await startSshd(this.tmp, log);
  }

  /** The shared agent of a mode, started on first use. */
  async agent(mode) {
    this.agents[mode] ??= await this.newAgent(mode);
    return this.agents[mode];
  }

  newAgent(mode) {
    return startAgent({
      dir: this.tmp,
      mode,
      secrets: this.secrets,
      allowedRoots: [this.tmp],
      profileDir: this.profileDir,
    });
  }

  ssh(cipher, ...rest) {
    return [...this.sshd.sshArgs(cipher), ...rest];
  }
}

// ------------------------------------------------------------------ 1. bulk transfer

async function benchTransfer(ctx) {
  const { o, sshd } = ctx;
  const size = Math.round(o.sizeMiB * MiB);
  const src = join(ctx.data, 'bulk-src.bin');
  log(`transfer: making a ${fmt(size / MiB)} MiB source file on tmpfs`);
  await sh(`head -c ${size} /dev/urandom > ${q(src)}`);
  const peer = await startTcpPeer();
  const agents = {};
  for (const m of MODES) agents[m] = await ctx.agent(m);
  const mbps = (ms) => size / 1e6 / (ms / 1000);
  let n = 0;
  const target = () => join(ctx.data, `bulk-dst-${++n}.bin`);

  const variant = (name, label, fn) => ({
    name,
    label,
    unit: 'MB/s',
    run: async () => {
      const dst = target();
      try {
        const ms = await timeMs(() => fn(dst));
        checkSize(dst, size);
        return mbps(ms);
      } finally {
        await rm(dst, { force: true });
      }
    },
  });

  const up = [];
  const down = [];
  for (const m of MODES) {
    up.push(
      variant(`outpost-${m}`, MODE_LABEL[m], (dst) => coldMs(agents[m], (c) => op.upload(c, src, dst))),
    );
    down.push(
      variant(`outpost-${m}`, MODE_LABEL[m], (dst) => coldMs(agents[m], (c) => op.download(c, src, dst))),
    );
  }
  up.push(variant('tcp', 'raw TCP (Node)', (dst) => tcpPut(peer.port, src, dst)));
  down.push(variant('tcp', 'raw TCP (Node)', (dst) => tcpGet(peer.port, src, dst)));
  for (const c of CIPHERS) {
    const s = SHORT[c];
    const scp = (legacy, from, to) =>
      run('scp', [...(legacy ? ['-O'] : []), '-q', ...sshd.scpArgs(c), from, to]);
    up.push(variant(`scp-${s}`, `scp ${s}`, (dst) => scp(false, src, `${sshd.target}:${dst}`)));
    up.push(variant(`scp-O-${s}`, `scp -O ${s}`, (dst) => scp(true, src, `${sshd.target}:${dst}`)));
    up.push(
      variant(`sshcat-${s}`, `ssh cat ${s}`, (dst) =>
        withFd(src, 'r', (fd) =>
          run('ssh', ctx.ssh(c, sshd.target, `cat > ${q(dst)}`), { stdio: [fd, 'ignore', 'pipe'] }),
        ),
      ),
    );
    down.push(variant(`scp-${s}`, `scp ${s}`, (dst) => scp(false, `${sshd.target}:${src}`, dst)));
    down.push(variant(`scp-O-${s}`, `scp -O ${s}`, (dst) => scp(true, `${sshd.target}:${src}`, dst)));
    down.push(
      variant(`sshcat-${s}`, `ssh cat ${s}`, (dst) =>
        withFd(dst, 'w', (fd) =>
          run('ssh', ctx.ssh(c, sshd.target, `cat ${q(src)}`), { stdio: ['ignore', fd, 'pipe'] }),
        ),
      ),
    );
  }
  const res = { unit: 'MB/s', sizeBytes: size, repeats: o.repeats };
  log('transfer: upload');
  res.upload = await interleave('upload', up, o.repeats);
  log('transfer: download');
  res.download = await interleave('download', down, o.repeats);
  await peer.stop();
  await rm(src, { force: true });
  return res;
}

// ------------------------------------------------------------------ 2. small files

async function benchFiles(ctx) {
  const { o, sshd } = ctx;
  const srcDir = join(ctx.data, 'files-src');
  log(`files: making ${o.files} files of ${o.fileSize} bytes`);
  const perDir = 100;
  const blob = (await import('node:crypto')).randomBytes(o.fileSize * Math.min(o.files, 1000));
  for (let i = 0; i < o.files; i++) {
    const d = join(srcDir, `d${String(Math.floor(i / perDir)).padStart(3, '0')}`);
    if (i % perDir === 0) await mkdir(d, { recursive: true });
    const off = (i % 1000) * o.fileSize;
    await writeFile(join(d, `f${String(i).padStart(5, '0')}.bin`), blob.subarray(off, off + o.fileSize));
  }
  const cipher = 'aes128-gcm@openssh.com';
  let n = 0;
  const variant = (name, label, fn) => ({
    name,
    label,
    unit: 'files/s',
    run: async () => {
      const dst = join(ctx.data, `files-dst-${++n}`);
      try {
        const ms = await timeMs(() => fn(dst));
        const got = await countFiles(dst);
        if (got !== o.files) throw new Error(`${dst}: ${got} files, expected ${o.files}`);
        return o.files / (ms / 1000);
      } finally {
        await rm(dst, { recursive: true, force: true });
      }
    },
  });
  const variants = [];
  for (const m of ['aes', 'ssl', 'none']) {
    const agent = await ctx.agent(m);
    variants.push(
      variant(`outpost-${m}`, MODE_LABEL[m], (dst) =>
        coldMs(agent, (c) => op.uploadDir(c, srcDir, dst, o.concurrency)),
      ),
    );
  }
  variants.push(
    variant('scp-r', `scp -r ${SHORT[cipher]}`, (dst) =>
      run('scp', ['-q', '-r', ...sshd.scpArgs(cipher), srcDir, `${sshd.target}:${dst}`]),
    ),
  );
  variants.push(
    variant('tar-ssh', `tar c | ssh tar x (${SHORT[cipher]})`, (dst) =>
      sh(
        `tar cf - -C ${q(srcDir)} . | ssh ${ctx.ssh(cipher, sshd.target).map(q).join(' ')} ` +
          q(`mkdir -p ${q(dst)} && tar xf - -C ${q(dst)}`),
      ),
    ),
  );
  const res = { unit: 'files/s', files: o.files, fileSize: o.fileSize, concurrency: o.concurrency };
  res.variants = await interleave('files', variants, o.repeats);
  await rm(srcDir, { recursive: true, force: true });
  return res;
}

// ------------------------------------------------------------------ 3. remote `true`

async function benchExec(ctx) {
  const { o, sshd } = ctx;
  const res = { unit: 'ms' };

  // Warm: an open Outpost connection against ssh through a ControlMaster.
  const clients = {};
  for (const m of MODES) clients[m] = await op.connect(await ctx.agent(m));
  const master = await sshd.startMaster();
  const warm = [
    ...MODES.map((m) => ({ name: `outpost-${m}`, label: MODE_LABEL[m], fn: () => op.execTrue(clients[m]) })),
    {
      name: 'ssh-controlmaster',
      label: 'ssh ControlMaster',
      fn: () => run('ssh', [...master.args, sshd.target, 'true']),
    },
  ];
  res.warm = await latencyRounds('warm exec', warm, o.execIters, 5);
  await master.stop();
  for (const c of Object.values(clients)) await op.endSession(c);

  // Cold: connect + handshake + exec (+ close) against a plain ssh.
  const cold = [
    ...MODES.map((m) => ({
      name: `outpost-${m}`,
      label: MODE_LABEL[m],
      fn: async () => coldMs(await ctx.agent(m), (c) => op.execTrue(c)),
    })),
    { name: 'ssh', label: 'ssh', fn: () => run('ssh', ctx.ssh(undefined, sshd.target, 'true')) },
  ];
  res.cold = await latencyRounds('cold exec', cold, o.coldIters, 1);
  return res;
}

/** Times `iters` rounds of every variant (interleaved, after `warmup` untimed rounds). */
async function latencyRounds(section, variants, iters, warmup) {
  const samples = Object.fromEntries(variants.map((v) => [v.name, []]));
  const errors = {};
  for (let i = 0; i < warmup + iters; i++) {
    for (const v of variants) {
      if (errors[v.name]) continue;
      try {
        const ms = await timeMs(v.fn);
        if (i >= warmup) samples[v.name].push(ms);
      } catch (err) {
        errors[v.name] = String(err?.message ?? err).slice(0, 1000);
        log(`${section}: ${v.label} FAILED: ${errors[v.name]}`);
      }
    }
  }
  const out = {};
  for (const v of variants) {
    out[v.name] = { label: v.label, error: errors[v.name] ?? null, ...latencyStats(samples[v.name]) };
    log(`${section}: ${v.label}: p50 ${fmt(out[v.name].p50)} ms, p95 ${fmt(out[v.name].p95)} ms`);
  }
  return out;
}

// ------------------------------------------------------------------ 4. small operations

async function benchSmallOps(ctx) {
  const { o, sshd } = ctx;
  const dir = join(ctx.data, 'ops');
  await mkdir(dir, { recursive: true });
  const paths = [];
  for (let i = 0; i < 100; i++) {
    const p = join(dir, `f${i}`);
    await writeFile(p, 'x');
    paths.push(p);
  }
  const N = o.ops;
  const inFlight = 64;
  const client = await op.connect(await ctx.agent('aes'));
  const res = { ops: N, inFlight, mode: 'aes' };

  const sequential = async (fn) => {
    const lat = new Float64Array(N);
    const t = nowNs();
    for (let i = 0; i < N; i++) {
      const s = nowNs();
      await fn(paths[i % paths.length]);
      lat[i] = Number(nowNs() - s) / 1000;
    }
    const ms = msSince(t);
    return { opsPerSec: N / (ms / 1000), lat };
  };
  const pipelined = async (fn) => {
    const t = nowNs();
    let next = 0;
    const worker = async () => {
      while (next < N) {
        const i = next++;
        await fn(paths[i % paths.length]);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    return N / (msSince(t) / 1000);
  };
  const exists = async (p) => {
    if ((await client.exists(p)) !== true) throw new Error(`exists(${p}) is not true`);
  };
  const stat = (p) => client.stat(p);

  // sftp: one batch of N `ls` commands (one session), minus a one-command batch (connect and teardown).
  const batch = (k) => {
    const f = join(ctx.tmp, `sftp-batch-${k}`);
    if (!existsSync(f))
      writeFileSync(f, Array.from({ length: k }, (_, i) => `ls ${paths[i % paths.length]}\n`).join(''));
    return f;
  };
  const sftp = (k) =>
    run('sftp', ['-q', ...sshd.scpArgs('aes128-gcm@openssh.com'), '-b', batch(k), sshd.target]);

  // Warm up both.
  for (let i = 0; i < 200; i++) await exists(paths[i % paths.length]);
  await sftp(10);

  const rec = {
    existsSeq: { label: 'Outpost AES FileExists, sequential', samples: [], lat: [] },
    statSeq: { label: 'Outpost AES stat, sequential', samples: [], lat: [] },
    existsPipe: { label: `Outpost AES FileExists, ${inFlight} in flight`, samples: [] },
    statPipe: { label: `Outpost AES stat, ${inFlight} in flight`, samples: [] },
    sftp: { label: 'sftp batch (ls, sequential)', samples: [], usPerOp: [] },
  };
  for (let r = 0; r < o.repeats; r++) {
    let s = await sequential(exists);
    rec.existsSeq.samples.push(s.opsPerSec);
    rec.existsSeq.lat.push(...s.lat);
    s = await sequential(stat);
    rec.statSeq.samples.push(s.opsPerSec);
    rec.statSeq.lat.push(...s.lat);
    rec.existsPipe.samples.push(await pipelined(exists));
    rec.statPipe.samples.push(await pipelined(stat));
    const one = (await sftp(1)).ms;
    const all = (await sftp(N)).ms;
    const perOp = Math.max(all - one, 0.001) / (N - 1);
    rec.sftp.samples.push(1000 / perOp);
    rec.sftp.usPerOp.push(perOp * 1000);
    log(
      `smallops #${r + 1}: exists seq ${fmt(rec.existsSeq.samples.at(-1))}/s, pipelined ${fmt(rec.existsPipe.samples.at(-1))}/s, ` +
        `stat seq ${fmt(rec.statSeq.samples.at(-1))}/s, pipelined ${fmt(rec.statPipe.samples.at(-1))}/s, sftp ${fmt(rec.sftp.samples.at(-1))}/s`,
    );
  }
  await op.endSession(client);
  res.variants = {};
  for (const [k, v] of Object.entries(rec)) {
    const out = { label: v.label, unit: 'ops/s', ...summarize(v.samples), samples: v.samples };
    if (v.lat) {
      out.p50us = percentile(v.lat, 50);
      out.p99us = percentile(v.lat, 99);
    }
    if (v.usPerOp) out.meanUsPerOp = median(v.usPerOp);
    res.variants[k] = out;
  }
  return res;
}

// ------------------------------------------------------------------ 5. process output

async function benchOutput(ctx) {
  const { o, sshd } = ctx;
  const size = Math.round(o.sizeMiB * MiB);
  const cmd = ['head', ['-c', String(size), '/dev/zero']];
  const variants = [];
  for (const m of MODES) {
    const agent = await ctx.agent(m);
    variants.push({
      name: `outpost-${m}`,
      label: MODE_LABEL[m],
      unit: 'MB/s',
      run: async () => {
        const { ms, value: bytes } = await op.cold(agent, (c) => op.spawnCount(c, '/usr/bin/head', cmd[1]));
        if (bytes !== size) throw new Error(`got ${bytes} bytes, expected ${size}`);
        return size / 1e6 / (ms / 1000);
      },
    });
  }
  for (const c of CIPHERS) {
    variants.push({
      name: `ssh-${SHORT[c]}`,
      label: `ssh ${SHORT[c]} (stdout to /dev/null)`,
      unit: 'MB/s',
      run: async () => {
        const ms = await timeMs(() =>
          withFd('/dev/null', 'w', (fd) =>
            run('ssh', ctx.ssh(c, sshd.target, `head -c ${size} /dev/zero`), {
              stdio: ['ignore', fd, 'pipe'],
            }),
          ),
        );
        return size / 1e6 / (ms / 1000);
      },
    });
  }
  return { unit: 'MB/s', sizeBytes: size, variants: await interleave('output', variants, o.repeats) };
}

// ------------------------------------------------------------------ 6. memory

async function benchMemory(ctx) {
  const { o, sshd } = ctx;
  const res = { unit: 'bytes', mode: 'aes', errors: {} };
  const step = async (name, fn) => {
    try {
      await fn();
    } catch (err) {
      res.errors[name] = String(err?.message ?? err).slice(0, 1000);
      log(`memory: ${name} FAILED: ${res.errors[name]}`);
    }
  };
  /** Median of a few samples a moment apart (RSS wobbles with GC). */
  const settled = async (pid) => {
    const v = [];
    for (let i = 0; i < 5; i++) {
      await sleep(200);
      v.push(treeRss(pid).total);
    }
    return median(v);
  };
  const agent = await ctx.newAgent('aes');
  const size = Math.round(o.sizeMiB * MiB);
  const src = join(ctx.data, 'mem-src.bin');
  const dst = join(ctx.data, 'mem-dst.bin');
  const back = join(ctx.data, 'mem-back.bin');
  try {
    await sleep(500);
    res.idle = await settled(agent.pid);
    log(`memory: idle agent ${fmt(res.idle / MiB)} MiB`);

    // Idle connections: handshake + GetAgentInfo + Ping, no product request (so no host process).
    // At most 16 connect at once: an agent closes the oldest unfinished handshake of an
    // address past MaxHandshakesPerAddress (default 32), and all of these come from 127.0.0.1.
    await step('connections', async () => {
      const clients = [];
      try {
        await mapLimit(o.conns, 16, async () => {
          const c = await op.connect(agent);
          clients.push(c);
          await c.ping();
        });
        res.connections = clients.length;
        res.withConnections = await settled(agent.pid);
        res.connectionsDelta = res.withConnections - res.idle;
        log(`memory: with ${clients.length} idle connections ${fmt(res.withConnections / MiB)} MiB`);
      } finally {
        await mapLimit(clients.length, 100, (i) => op.endSession(clients[i]));
      }
      res.afterConnections = await settled(agent.pid);
    });

    // Peak while the bulk size goes up and comes back down (agent + its host process).
    await step('transfer', async () => {
      await sh(`head -c ${size} /dev/urandom > ${q(src)}`);
      const client = await op.connect(agent);
      try {
        let s = sampleRss(agent.pid, 20);
        await op.upload(client, src, dst);
        res.peakUpload = s.stop();
        res.hostWarm = await settled(agent.pid);
        s = sampleRss(agent.pid, 20);
        await op.download(client, dst, back);
        res.peakDownload = s.stop();
      } finally {
        await op.endSession(client);
      }
      res.transferBytes = size;
      res.peakTransfer = Math.max(res.peakUpload, res.peakDownload);
      res.transferDelta = res.peakTransfer - res.idle;
      log(
        `memory: peak during ${fmt(size / MiB)} MiB up ${fmt(res.peakUpload / MiB)} MiB, down ${fmt(res.peakDownload / MiB)} MiB`,
      );
    });

    // OpenSSH for reference: the listener, and its tree during an `ssh cat` upload of the same file.
    await step('sshd', async () => {
      if (!existsSync(src)) await sh(`head -c ${size} /dev/urandom > ${q(src)}`);
      res.sshdIdle = treeRss(sshd.pid).total;
      const s = sampleRss(sshd.pid, 20);
      await withFd(src, 'r', (fd) =>
        run('ssh', ctx.ssh('aes128-gcm@openssh.com', sshd.target, `cat > ${q(dst)}`), {
          stdio: [fd, 'ignore', 'pipe'],
        }),
      );
      res.sshdPeakTransfer = s.stop();
    });
  } finally {
    for (const f of [src, dst, back]) await rm(f, { force: true });
    await agent.stop();
  }
  return res;
}

// ------------------------------------------------------------------ 7. fan-out

async function benchFanout(ctx) {
  const { o, sshd } = ctx;
  const n = o.agents;
  log(`fanout: starting ${n} agents`);
  const agents = [];
  const res = { agents: n, mode: 'aes', unit: 's' };
  try {
    await mapLimit(n, 4, async () => {
      agents.push(await ctx.newAgent('aes'));
    });
    const ports = new Set(agents.map((a) => a.port));
    if (ports.size !== n) throw new Error(`expected ${n} distinct ports, got ${ports.size}`);
    log(`fanout: ${n} agents listening`);
    const connectExecAll = async () => {
      const t = nowNs();
      const clients = await Promise.all(
        agents.map(async (a) => {
          const c = await op.connect(a);
          await op.execTrue(c);
          return c;
        }),
      );
      const ms = msSince(t);
      await Promise.all(clients.map((c) => op.endSession(c)));
      return ms / 1000;
    };
    // First contact: every agent has just started and has no host process
    // yet, so this pays n Node boots (one per agent) on this machine's cores.
    const first = await connectExecAll();
    res.first = { label: `Outpost AES: first contact after agent start, ${n} agents`, ...summarize([first]) };
    log(`fanout: first contact ${fmt(first)} s`);
    // Let the spare hosts the agents start after that first session settle.
    await sleep(2000);
    const variants = [
      {
        name: 'outpost-cold',
        label: `Outpost AES: connect + exec true on ${n} agents`,
        unit: 's',
        run: connectExecAll,
      },
      {
        name: 'ssh-cold',
        label: `ssh true × ${n} in parallel (one sshd)`,
        unit: 's',
        run: async () =>
          (await timeMs(() =>
            Promise.all(agents.map(() => run('ssh', ctx.ssh(undefined, sshd.target, 'true')))),
          )) / 1000,
      },
    ];
    res.cold = await interleave('fanout', variants, o.repeats);
    // Warm: connections already open, exec only.
    const clients = await Promise.all(agents.map((a) => op.connect(a)));
    try {
      await Promise.all(clients.map((c) => op.execTrue(c)));
      const warm = [];
      for (let r = 0; r < o.repeats; r++)
        warm.push((await timeMs(() => Promise.all(clients.map((c) => op.execTrue(c))))) / 1000);
      res.warm = {
        label: `Outpost AES: exec true on ${n} open connections`,
        ...summarize(warm),
        samples: warm,
      };
      log(`fanout: warm ${fmt(res.warm.median)} s`);
    } finally {
      await Promise.all(clients.map((c) => op.endSession(c)));
    }
  } finally {
    await mapLimit(agents.length, 16, (i) => agents[i].stop());
  }
  return res;
}

const BENCHES = {
  transfer: benchTransfer,
  files: benchFiles,
  exec: benchExec,
  smallops: benchSmallOps,
  output: benchOutput,
  memory: benchMemory,
  fanout: benchFanout,
  deploy: (ctx) => benchDeploy(ctx, { interleave, log }),
};

// ------------------------------------------------------------------ targets

/** The fastest median among OpenSSH tools using `cipher` in a transfer direction. */
function bestSsh(dir, cipher) {
  const s = SHORT[cipher];
  let best = null;
  for (const k of [`scp-${s}`, `scp-O-${s}`, `sshcat-${s}`]) {
    const v = dir?.[k];
    if (v && Number.isFinite(v.median) && (!best || v.median > best.value))
      best = { value: v.median, label: v.label };
  }
  return best;
}

function evaluateTargets(sections) {
  const t = [];
  const ratio = (id, what, a, b, cmp, threshold, unit) => {
    const value = a && b ? a.value / b.value : Number.NaN;
    t.push({
      id,
      what,
      outpost: a ? `${fmt(a.value)} ${unit}` : '–',
      baseline: b ? `${fmt(b.value)} ${unit} (${b.label})` : '–',
      measured: Number.isFinite(value) ? `${fmt(value, 2)}×` : '–',
      value,
      target: `${cmp} ${threshold}×`,
      met: Number.isFinite(value) ? (cmp === '≥' ? value >= threshold : value <= threshold) : null,
    });
  };
  const absolute = (id, what, value, cmp, threshold, unit, outpost, baseline = '–') => {
    t.push({
      id,
      what,
      outpost: outpost ?? (Number.isFinite(value) ? `${fmt(value)} ${unit}` : '–'),
      baseline,
      measured: Number.isFinite(value) ? `${fmt(value)} ${unit}` : '–',
      value,
      target: `${cmp} ${threshold} ${unit}`,
      met: Number.isFinite(value) ? (cmp === '≥' ? value >= threshold : value <= threshold) : null,
    });
  };
  const pick = (rec, label) =>
    rec && Number.isFinite(rec.median) ? { value: rec.median, label: label ?? rec.label } : null;

  const tr = sections.transfer;
  if (tr && !tr.error) {
    for (const dir of ['upload', 'download']) {
      const d = tr[dir];
      const gcm = bestSsh(d, 'aes128-gcm@openssh.com');
      ratio(
        `aes-${dir}-ctr`,
        `AES-256 ${dir} vs ssh aes256-ctr`,
        pick(d['outpost-aes']),
        bestSsh(d, 'aes256-ctr'),
        '≥',
        1.5,
        'MB/s',
      );
      ratio(
        `aes-${dir}-gcm`,
        `AES-256 ${dir} vs ssh aes128-gcm`,
        pick(d['outpost-aes']),
        gcm,
        '≥',
        1.0,
        'MB/s',
      );
      ratio(`tls-${dir}-gcm`, `TLS ${dir} vs ssh aes128-gcm`, pick(d['outpost-ssl']), gcm, '≥', 1.3, 'MB/s');
      ratio(
        `none-${dir}-tcp`,
        `none ${dir} vs raw TCP (Node)`,
        pick(d['outpost-none']),
        pick(d.tcp),
        '≥',
        0.6,
        'MB/s',
      );
    }
  }
  const ex = sections.exec;
  if (ex && !ex.error) {
    const p50 = (r) => (r && Number.isFinite(r.p50) ? { value: r.p50, label: r.label } : null);
    ratio(
      'exec-warm',
      'warm exec `true` (p50) vs ssh ControlMaster',
      p50(ex.warm['outpost-aes']),
      p50(ex.warm['ssh-controlmaster']),
      '≤',
      0.35,
      'ms',
    );
    ratio(
      'exec-cold',
      'cold connect + exec (p50) vs plain ssh',
      p50(ex.cold['outpost-aes']),
      p50(ex.cold.ssh),
      '≤',
      0.3,
      'ms',
    );
  }
  const so = sections.smallops;
  if (so && !so.error) {
    const v = so.variants;
    ratio(
      'ops-pipelined',
      `small ops, ${so.inFlight} in flight, vs sftp`,
      pick(v.existsPipe),
      pick(v.sftp),
      '≥',
      15,
      'ops/s',
    );
    absolute('ops-seq-p50', 'small ops sequential p50 (FileExists)', v.existsSeq.p50us, '≤', 250, 'µs');
  }
  const fi = sections.files;
  if (fi && !fi.error) {
    const v = fi.variants;
    ratio(
      'files-tar',
      `${fi.files} small files vs tar | ssh tar x`,
      pick(v['outpost-aes']),
      pick(v['tar-ssh']),
      '≥',
      1.0,
      'files/s',
    );
    ratio(
      'files-scp',
      `${fi.files} small files vs scp -r`,
      pick(v['outpost-aes']),
      pick(v['scp-r']),
      '≥',
      5,
      'files/s',
    );
  }
  const me = sections.memory;
  if (me && !me.error) {
    absolute('mem-idle', 'idle agent RSS', me.idle / MiB, '≤', 60, 'MiB');
    absolute(
      'mem-conns',
      `RSS added by ${me.connections} idle connections`,
      me.connectionsDelta / MiB,
      '≤',
      64,
      'MiB',
    );
    absolute(
      'mem-transfer',
      `RSS added during a ${fmt(me.transferBytes / MiB)} MiB transfer (agent + host)`,
      me.transferDelta / MiB,
      '≤',
      100,
      'MiB',
      undefined,
      `sshd: ${fmt(me.sshdIdle / MiB)} → ${fmt(me.sshdPeakTransfer / MiB)} MiB`,
    );
  }
  const fo = sections.fanout;
  if (fo && !fo.error) {
    const c = fo.cold['outpost-cold'];
    const s = fo.cold['ssh-cold'];
    absolute(
      'fanout',
      `fan-out: connect + exec on ${fo.agents} agents`,
      c?.median,
      '≤',
      2,
      's',
      undefined,
      s && Number.isFinite(s.median) ? `${fmt(s.median)} s (${s.label})` : '–',
    );
    if (fo.first)
      absolute(
        'fanout-first',
        `fan-out: first contact with ${fo.agents} just-started agents (one host boot each)`,
        fo.first.median,
        '≤',
        2,
        's',
        undefined,
        s && Number.isFinite(s.median) ? `${fmt(s.median)} s (${s.label})` : '–',
      );
  }
  deployTargets(sections.deploy, { ratio, absolute, pick });
  return t;
}

// ------------------------------------------------------------------ report

function table(header, rows) {
  const line = (cells) => `| ${cells.map((c) => String(c).replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function renderMarkdown(result) {
  const out = [];
  const m = result.machine;
  out.push(`# Outpost vs OpenSSH — ${result.startedAt}`);
  out.push('');
  out.push(
    `${m.cores} cores (${m.cpu}), ${fmt(m.memoryBytes / GiB)} GiB, Linux ${m.kernel}, Node ${m.node}, ${m.openssh}` +
      `, load average ${m.loadAtStart.map((x) => x.toFixed(1)).join('/')} at start and ` +
      `${(m.loadAtEnd ?? []).map((x) => x.toFixed(1)).join('/')} at the end` +
      `${result.options.quick ? ' — **quick run** (small sizes, 1 repeat)' : ''}`,
  );
  out.push('');
  out.push('## Targets');
  out.push('');
  out.push(
    table(
      ['target', 'Outpost', 'baseline', 'measured', 'goal', 'result'],
      result.targets.map((t) => [
        t.what,
        t.outpost,
        t.baseline,
        t.measured,
        t.target,
        t.met === null ? 'n/a' : t.met ? 'met' : '**missed**',
      ]),
    ),
  );
  const s = result.sections;
  const variantRows = (vars, ref) =>
    Object.values(vars).map((v) => [
      v.label,
      v.error ? `error: ${v.error.slice(0, 80)}` : fmt(v.median),
      fmt(v.min),
      fmt(v.max),
      ref && Number.isFinite(ref) && Number.isFinite(v.median) ? `${fmt(v.median / ref, 2)}×` : '–',
    ]);
  if (s.transfer && !s.transfer.error) {
    for (const dir of ['upload', 'download']) {
      out.push('');
      out.push(
        `## ${dir === 'upload' ? 'Upload' : 'Download'} of ${fmt(s.transfer.sizeBytes / MiB)} MiB (MB/s)`,
      );
      out.push('');
      const ref = s.transfer[dir]['outpost-aes']?.median;
      out.push(
        table(
          ['variant', 'median', 'min', 'max', 'Outpost AES / this'],
          variantRows(s.transfer[dir]).map((r) => {
            const v = Object.values(s.transfer[dir]).find((x) => x.label === r[0]);
            r[4] = Number.isFinite(ref) && Number.isFinite(v?.median) ? `${fmt(ref / v.median, 2)}×` : '–';
            return r;
          }),
        ),
      );
    }
  }
  if (s.files && !s.files.error) {
    out.push('');
    out.push(`## ${s.files.files} files of ${s.files.fileSize} B, directory upload (files/s)`);
    out.push('');
    out.push(
      table(
        ['variant', 'median', 'min', 'max', 'vs tar | ssh'],
        variantRows(s.files.variants, s.files.variants['tar-ssh']?.median),
      ),
    );
  }
  if (s.exec && !s.exec.error) {
    for (const kind of ['warm', 'cold']) {
      out.push('');
      out.push(
        `## Remote \`true\`, ${kind === 'warm' ? 'warm (open connection / ControlMaster)' : 'cold (connect + handshake + exec)'} (ms)`,
      );
      out.push('');
      out.push(
        table(
          ['variant', 'p50', 'p95', 'min', 'max', 'n'],
          Object.values(s.exec[kind]).map((v) => [
            v.label,
            v.error ? `error: ${v.error.slice(0, 80)}` : fmt(v.p50),
            fmt(v.p95),
            fmt(v.min),
            fmt(v.max),
            String(v.n),
          ]),
        ),
      );
    }
  }
  if (s.smallops && !s.smallops.error) {
    out.push('');
    out.push(`## Small operations, ${s.smallops.ops} per run (ops/s)`);
    out.push('');
    out.push(
      table(
        ['variant', 'median', 'min', 'max', 'p50 µs', 'p99 µs'],
        Object.values(s.smallops.variants).map((v) => [
          v.label,
          fmt(v.median),
          fmt(v.min),
          fmt(v.max),
          fmt(v.p50us ?? v.meanUsPerOp),
          fmt(v.p99us),
        ]),
      ),
    );
    out.push('');
    out.push('sftp: per-op time is the mean, (batch of N − batch of 1) / (N − 1).');
  }
  if (s.output && !s.output.error) {
    out.push('');
    out.push(`## Process output, \`head -c ${Math.round(s.output.sizeBytes / MiB)}M /dev/zero\` (MB/s)`);
    out.push('');
    out.push(
      table(
        ['variant', 'median', 'min', 'max', 'vs ssh aes128-gcm'],
        variantRows(s.output.variants, s.output.variants['ssh-aes128-gcm']?.median),
      ),
    );
  }
  if (s.memory && !s.memory.error) {
    const me = s.memory;
    const mb = (b) => (Number.isFinite(b) ? `${fmt(b / MiB)} MiB` : '–');
    out.push('');
    out.push('## Agent memory (RSS of the agent and its host processes, from /proc)');
    out.push('');
    out.push(
      table(
        ['state', 'RSS'],
        [
          ['idle agent', mb(me.idle)],
          [`${me.connections} idle connections`, `${mb(me.withConnections)} (+${mb(me.connectionsDelta)})`],
          ['after closing them', mb(me.afterConnections)],
          [`peak, ${fmt(me.transferBytes / MiB)} MiB upload (host started)`, mb(me.peakUpload)],
          ['after the upload (host warm)', mb(me.hostWarm)],
          [`peak, ${fmt(me.transferBytes / MiB)} MiB download`, mb(me.peakDownload)],
          ['sshd listener (reference)', mb(me.sshdIdle)],
          ['sshd tree, peak during ssh cat upload', mb(me.sshdPeakTransfer)],
        ],
      ),
    );
    for (const [k, v] of Object.entries(me.errors ?? {})) out.push(`\n- ${k} failed: ${v}`);
  }
  if (s.fanout && !s.fanout.error) {
    const fo = s.fanout;
    out.push('');
    out.push(`## Fan-out over ${fo.agents} agents (s)`);
    out.push('');
    const rows = variantRows(fo.cold);
    if (fo.first)
      rows.unshift([fo.first.label, fmt(fo.first.median), fmt(fo.first.min), fmt(fo.first.max), '–']);
    if (fo.warm) rows.push([fo.warm.label, fmt(fo.warm.median), fmt(fo.warm.min), fmt(fo.warm.max), '–']);
    out.push(table(['variant', 'median', 'min', 'max', '–'], rows));
  }
  out.push(...deployMarkdown(s.deploy, { table, variantRows, fmt }));
  const failed = Object.entries(s).filter(([, v]) => v.error);
  if (failed.length) {
    out.push('');
    out.push('## Failed sections');
    out.push('');
    for (const [k, v] of failed) out.push(`- ${k}: ${v.error}`);
  }
  return `${out.join('\n')}\n`;
}

async function machineInfo() {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const openssl = await run('openssl', ['version'], { check: false }).catch(() => ({ stdout: '' }));
  return {
    cores: os.cpus().length,
    cpu: model,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
    openssh: await versions(),
    openssl: openssl.stdout.trim(),
    hostname: os.hostname(),
    loadAtStart: os.loadavg(),
  };
}

// ------------------------------------------------------------------ main

async function main() {
  const o = parseOptions(process.argv.slice(2));
  installSignalHandlers();
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  await op.loadSdk();
  await ensureOpenSsh(log);
  const startedAt = new Date().toISOString();
  const stamp = startedAt.replace(/[:.]/g, '-');
  const resultsDir = join(HERE, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const ctx = new Context(o);
  if (o.profile) ctx.profileDir = join(resultsDir, `prof-${stamp}`);
  if (o.keep) log(`--keep: temp dir ${ctx.tmp} is kept`);
  log(`temp dir ${ctx.tmp}; sections: ${o.sections.join(', ')}${o.quick ? ' (quick)' : ''}`);
  await ctx.init();
  const result = {
    startedAt,
    machine: await machineInfo(),
    options: { ...o, only: undefined },
    sections: {},
    targets: [],
  };
  for (const name of o.sections) {
    log(`== ${name}`);
    const t = nowNs();
    try {
      result.sections[name] = await BENCHES[name](ctx);
    } catch (err) {
      log(`${name} FAILED: ${err?.stack ?? err}`);
      result.sections[name] = { error: String(err?.message ?? err) };
    }
    result.sections[name].seconds = msSince(t) / 1000;
  }
  result.finishedAt = new Date().toISOString();
  result.machine.loadAtEnd = os.loadavg();
  result.targets = evaluateTargets(result.sections);
  const file = join(resultsDir, `${stamp}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(result, (_k, v) => (v instanceof Float64Array ? undefined : v), 2)}\n`,
  );
  process.stdout.write(renderMarkdown(result));
  log(`results written to ${file}`);
  if (ctx.profileDir) log(`CPU profiles in ${ctx.profileDir} (written when the agents stop)`);
}

let exitCode = 0;
main()
  .catch((err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    exitCode = 1;
  })
  .finally(async () => {
    await runCleanups();
    process.exit(exitCode);
  });
