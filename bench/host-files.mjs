#!/usr/bin/env node
/**
 * A focused benchmark of the host's small-file paths (docs/BENCHMARKS.md,
 * bugs 5 and 6): many small WriteAllBytes, and FileExists / GetFileInfo one at
 * a time and 64 in flight. Two parts, each repeated (medians printed):
 *
 *   host  the file service in this process (dist/host/files.js, AllowedRoots
 *         set as in the agent): wall time and this process's CPU per
 *         operation, without the wire, the agent or the client.
 *   e2e   an agent (dist/cli/main.js, as bench/run.mjs starts it) and the SDK:
 *         upload() of a directory of N small files (64 in flight, verify off),
 *         and sequential / pipelined exists() and stat(); CPU of the agent's
 *         process tree (agent + host) and of this process (the client).
 *
 *   npm run build && node bench/host-files.mjs [--only host,e2e] [--files N]
 *       [--ops N] [--repeats N] [--file-size B] [--concurrency N]
 *       [--files-mode none|ssl|aes] [--ops-mode none|ssl|aes] [--client-prof DIR]
 *       [--agent-prof DIR]
 *
 * --client-prof DIR writes a CPU profile of this process (the SDK client)
 * during the first upload only, to DIR/client-upload-<pid>.cpuprofile
 * (summarise it with bench/lib/prof-summary.mjs). --agent-prof DIR profiles
 * the agents and their host processes as `run.mjs --profile` does (written
 * to DIR when they stop).
 *
 * Everything lives in a private temp dir on /dev/shm (tmpfs), removed at the end.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import os from 'node:os';
import { join } from 'node:path';
import { makeSecrets, ROOT, startAgent } from './lib/agents.mjs';
import * as op from './lib/outpost.mjs';
import {
  fmt,
  installSignalHandlers,
  makeTempDir,
  median,
  msSince,
  nowNs,
  percentile,
  processTree,
  runCleanups,
} from './lib/util.mjs';

const o = {
  only: ['host', 'e2e'],
  files: 3000,
  ops: 5000,
  repeats: 3,
  fileSize: 1024,
  concurrency: 64,
  filesMode: 'none',
  opsMode: 'aes',
  clientProf: null,
  agentProf: null,
};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i];
  const value = () => {
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    return v;
  };
  const num = () => {
    const n = Number(value());
    if (!Number.isFinite(n) || n < 1) throw new Error(`${flag} needs a positive number`);
    return Math.round(n);
  };
  switch (flag) {
    case '--only':
      o.only = value().split(',');
      break;
    case '--files':
      o.files = num();
      break;
    case '--ops':
      o.ops = num();
      break;
    case '--repeats':
      o.repeats = num();
      break;
    case '--file-size':
      o.fileSize = num();
      break;
    case '--concurrency':
      o.concurrency = num();
      break;
    case '--files-mode':
      o.filesMode = value();
      break;
    case '--ops-mode':
      o.opsMode = value();
      break;
    case '--client-prof':
      o.clientProf = value();
      break;
    case '--agent-prof':
      o.agentProf = value();
      break;
    case '--help':
    case '-h':
      process.stdout.write(`${readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]}*/\n`);
      process.exit(0);
      break;
    default:
      throw new Error(`unknown option ${flag} (see --help)`);
  }
}

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
const PER_DIR = 100;
const IN_FLIGHT = 64;

/** CPU milliseconds of this process since `start` (a process.cpuUsage() value). */
const cpuMsSince = (start) => {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1000;
};

/** utime + stime (ms) of every process in `pid`'s tree, by pid. */
function treeCpu(pid) {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  const out = new Map();
  for (const p of processTree(pid)) {
    try {
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out.set(p, (Number(f[11]) + Number(f[12])) * tick);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
/** CPU ms the tree used between two treeCpu() samples (new processes count from 0). */
function treeCpuDelta(before, after) {
  let ms = 0;
  for (const [p, v] of after) ms += v - (before.get(p) ?? 0);
  return ms;
}

/** A CPU profiler of this process, started and stopped around the uploads (--client-prof). */
function clientProfiler(dir) {
  if (!dir) return { start() {}, stop: async () => {} };
  mkdirSync(dir, { recursive: true });
  const session = new Session();
  session.connect();
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
  let started = null;
  return {
    start() {
      started ??= post('Profiler.enable')
        .then(() => post('Profiler.setSamplingInterval', { interval: 200 }))
        .then(() => post('Profiler.start'));
      return started;
    },
    async stop() {
      if (!started) return;
      await started;
      const { profile } = await post('Profiler.stop');
      const file = join(dir, `client-upload-${process.pid}.cpuprofile`);
      writeFileSync(file, JSON.stringify(profile));
      log(`client profile: ${file}`);
    },
  };
}

/** Runs `fn(i)` for i in 0..n-1, `limit` at a time. */
async function pipelined(n, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

function fileName(i) {
  return join(`d${String(Math.floor(i / PER_DIR)).padStart(3, '0')}`, `f${String(i).padStart(5, '0')}.bin`);
}

// ------------------------------------------------------------------ host (in process)

async function benchHost(tmp, blob) {
  const { FileService } = await import(new URL('dist/host/files.js', `file://${ROOT}/`).href);
  const data = join(tmp, 'host');
  await mkdir(data, { recursive: true });
  // HostSettings (src/protocol/pipe.ts), as the agent sends it in Init.
  const ctx = {
    agentType: 2,
    rootPath: data,
    baseDirectory: data,
    allowedRoots: [tmp],
    maxMessageSize: 32 * 1024 * 1024,
    maxOpenFiles: 1000,
    maxProcesses: 4,
    extensionPath: null,
  };
  const rows = {
    write: [],
    writeCpu: [],
    existsSeq: [],
    existsPipe: [],
    infoSeq: [],
    infoPipe: [],
    cpuOp: [],
  };
  const ticks = 638_000_000_000_000_000n;
  for (let r = 0; r < o.repeats; r++) {
    const svc = new FileService(ctx);
    const dst = join(data, `w${r}`);
    let t = nowNs();
    let cpu = process.cpuUsage();
    await pipelined(o.files, IN_FLIGHT, async (i) => {
      const off = (i % 1000) * o.fileSize;
      await svc.writeAllBytes({
        path: join(dst, fileName(i)),
        contents: blob.subarray(off, off + o.fileSize),
        lastWriteUtc: ticks,
        mode: 0o644,
      });
    });
    const wms = msSince(t);
    rows.write.push(o.files / (wms / 1000));
    rows.writeCpu.push((cpuMsSince(cpu) * 1000) / o.files);
    const paths = Array.from({ length: 100 }, (_, i) => join(dst, fileName(i)));
    const ops = { FileExists: (a) => svc.fileExists(a), GetFileInfo: (a) => svc.getFileInfo(a) };
    for (const [name, seqKey, pipeKey] of [
      ['FileExists', 'existsSeq', 'existsPipe'],
      ['GetFileInfo', 'infoSeq', 'infoPipe'],
    ]) {
      const lat = new Float64Array(o.ops);
      cpu = process.cpuUsage();
      for (let i = 0; i < o.ops; i++) {
        const s = nowNs();
        await ops[name]({ path: paths[i % 100] });
        lat[i] = Number(nowNs() - s) / 1000;
      }
      if (name === 'FileExists') rows.cpuOp.push((cpuMsSince(cpu) * 1000) / o.ops);
      rows[seqKey].push(percentile([...lat], 50));
      t = nowNs();
      await pipelined(o.ops, IN_FLIGHT, (i) => ops[name]({ path: paths[i % 100] }));
      rows[pipeKey].push(o.ops / (msSince(t) / 1000));
    }
    await rm(dst, { recursive: true, force: true });
    log(
      `host #${r + 1}: WriteAllBytes ${fmt(rows.write.at(-1))} files/s (${fmt(rows.writeCpu.at(-1))} µs CPU/file), ` +
        `FileExists p50 ${fmt(rows.existsSeq.at(-1))} µs / ${fmt(rows.existsPipe.at(-1))} ops/s pipelined, ` +
        `GetFileInfo p50 ${fmt(rows.infoSeq.at(-1))} µs / ${fmt(rows.infoPipe.at(-1))} ops/s`,
    );
  }
  return {
    'WriteAllBytes 1 KiB, 64 in flight (files/s)': median(rows.write),
    'WriteAllBytes CPU per file (µs)': median(rows.writeCpu),
    'FileExists sequential p50 (µs)': median(rows.existsSeq),
    'FileExists sequential CPU per op (µs)': median(rows.cpuOp),
    'FileExists 64 in flight (ops/s)': median(rows.existsPipe),
    'GetFileInfo sequential p50 (µs)': median(rows.infoSeq),
    'GetFileInfo 64 in flight (ops/s)': median(rows.infoPipe),
  };
}

// ------------------------------------------------------------------ e2e (agent + SDK)

async function benchE2e(tmp, blob) {
  const src = join(tmp, 'src');
  for (let i = 0; i < o.files; i++) {
    const f = join(src, fileName(i));
    if (i % PER_DIR === 0) await mkdir(join(f, '..'), { recursive: true });
    const off = (i % 1000) * o.fileSize;
    await writeFile(f, blob.subarray(off, off + o.fileSize));
  }
  const secrets = await makeSecrets(tmp);
  const agents = {};
  const agent = async (mode) => {
    agents[mode] ??= await startAgent({
      dir: tmp,
      mode,
      secrets,
      allowedRoots: [tmp],
      profileDir: o.agentProf ?? undefined,
    });
    return agents[mode];
  };
  const rows = {
    up: [],
    upAgentCpu: [],
    upClientCpu: [],
    existsSeq: [],
    statSeq: [],
    existsPipe: [],
    statPipe: [],
  };

  const fa = await agent(o.filesMode);
  const oa = await agent(o.opsMode);
  const opsDir = join(tmp, 'ops');
  await mkdir(opsDir);
  const paths = [];
  for (let i = 0; i < 100; i++) {
    paths.push(join(opsDir, `f${i}`));
    await writeFile(paths[i], 'x');
  }
  const prof = clientProfiler(o.clientProf);
  let profiled = 0;
  const opsClient = await op.connect(oa);
  for (let i = 0; i < 200; i++) await opsClient.exists(paths[i % 100]); // warm up
  try {
    for (let r = 0; r < o.repeats; r++) {
      // Directory upload, timed as bench/run.mjs does (connect … done).
      const dst = join(tmp, `dst-${r}`);
      await prof.start();
      const cpu0 = treeCpu(fa.pid);
      const c0 = process.cpuUsage();
      const t = nowNs();
      const client = await op.connect(fa);
      let agentMs;
      let clientMs;
      let ms;
      try {
        await op.uploadDir(client, src, dst, o.concurrency);
        ms = msSince(t);
        agentMs = treeCpuDelta(cpu0, treeCpu(fa.pid));
        clientMs = cpuMsSince(c0);
        if (++profiled === 1) await prof.stop(); // the first upload only
      } finally {
        await op.endSession(client);
      }
      let got = 0;
      for (const d of await readdir(dst)) got += (await readdir(join(dst, d))).length;
      if (got !== o.files) throw new Error(`${dst}: ${got} files, expected ${o.files}`);
      await rm(dst, { recursive: true, force: true });
      rows.up.push(o.files / (ms / 1000));
      rows.upAgentCpu.push((agentMs * 1000) / o.files);
      rows.upClientCpu.push((clientMs * 1000) / o.files);

      // Small operations on an open connection.
      const seq = async (fn) => {
        const lat = new Float64Array(o.ops);
        for (let i = 0; i < o.ops; i++) {
          const s = nowNs();
          await fn(paths[i % 100]);
          lat[i] = Number(nowNs() - s) / 1000;
        }
        return percentile([...lat], 50);
      };
      const pipe = async (fn) => {
        const s = nowNs();
        await pipelined(o.ops, IN_FLIGHT, (i) => fn(paths[i % 100]));
        return o.ops / (msSince(s) / 1000);
      };
      const exists = async (p) => {
        if ((await opsClient.exists(p)) !== true) throw new Error(`exists(${p}) is not true`);
      };
      const stat = (p) => opsClient.stat(p);
      rows.existsSeq.push(await seq(exists));
      rows.statSeq.push(await seq(stat));
      rows.existsPipe.push(await pipe(exists));
      rows.statPipe.push(await pipe(stat));
      log(
        `e2e #${r + 1}: upload ${fmt(rows.up.at(-1))} files/s (agent+host ${fmt(rows.upAgentCpu.at(-1))} µs CPU/file, ` +
          `client ${fmt(rows.upClientCpu.at(-1))}), exists p50 ${fmt(rows.existsSeq.at(-1))} µs / ${fmt(rows.existsPipe.at(-1))} ops/s, ` +
          `stat p50 ${fmt(rows.statSeq.at(-1))} µs / ${fmt(rows.statPipe.at(-1))} ops/s`,
      );
    }
  } finally {
    await op.endSession(opsClient);
    for (const a of Object.values(agents)) await a.stop();
  }
  return {
    [`upload ${o.files} × ${o.fileSize} B, ${o.concurrency} in flight, ${o.filesMode} (files/s)`]: median(
      rows.up,
    ),
    'upload: agent + host CPU per file (µs)': median(rows.upAgentCpu),
    'upload: client CPU per file (µs)': median(rows.upClientCpu),
    [`exists() sequential p50, ${o.opsMode} (µs)`]: median(rows.existsSeq),
    [`stat() sequential p50, ${o.opsMode} (µs)`]: median(rows.statSeq),
    [`exists() ${IN_FLIGHT} in flight, ${o.opsMode} (ops/s)`]: median(rows.existsPipe),
    [`stat() ${IN_FLIGHT} in flight, ${o.opsMode} (ops/s)`]: median(rows.statPipe),
  };
}

async function main() {
  installSignalHandlers();
  await op.loadSdk();
  const tmp = makeTempDir('outpost-hostfiles-');
  log(
    `${ROOT}: temp dir ${tmp}, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const blob = (await import('node:crypto')).randomBytes(o.fileSize * Math.min(o.files, 1000));
  const out = {};
  if (o.only.includes('host')) Object.assign(out, await benchHost(tmp, blob));
  if (o.only.includes('e2e')) Object.assign(out, await benchE2e(tmp, blob));
  process.stdout.write(`\n| measure (median of ${o.repeats}) | value |\n| --- | --- |\n`);
  for (const [k, v] of Object.entries(out)) process.stdout.write(`| ${k} | ${fmt(v)} |\n`);
  log(
    `load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
}

let exitCode = 0;
main()
  .catch((err) => {
    process.stderr.write(`host-files: ${err?.stack ?? err}\n`);
    exitCode = 1;
  })
  .finally(async () => {
    await runCleanups();
    process.exit(exitCode);
  });
