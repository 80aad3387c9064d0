/**
 * Shared helpers for the benchmarks: cleanup registry, child processes,
 * timing and statistics, /proc memory sampling, free ports.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ------------------------------------------------------------------ cleanup

const cleanups = [];
let cleaning = false;

/** Registers a function run (last registered first) when the run ends, however it ends. */
export function onCleanup(fn) {
  cleanups.push(fn);
  return fn;
}

/** Removes a function registered with onCleanup (it has been done early). */
export function dropCleanup(fn) {
  const i = cleanups.lastIndexOf(fn);
  if (i >= 0) cleanups.splice(i, 1);
}

/** Registers `fn` for cleanup and returns a function that runs it now (once) and unregisters it. */
export function cleanupOnce(fn) {
  let done = false;
  const wrapped = async () => {
    if (done) return;
    done = true;
    dropCleanup(wrapped);
    await fn();
  };
  onCleanup(wrapped);
  return wrapped;
}

/** Runs every registered cleanup once; synchronous parts first so a signal exit still cleans up. */
export async function runCleanups() {
  if (cleaning) return;
  cleaning = true;
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup: ${err?.message ?? err}\n`);
    }
  }
}

export function installSignalHandlers() {
  let signalled = 0;
  const onSignal = (sig) => {
    signalled++;
    if (signalled > 1) process.exit(130);
    process.stderr.write(`\n${sig}: cleaning up…\n`);
    const force = setTimeout(() => process.exit(130), 15_000);
    force.unref();
    runCleanups().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

// ------------------------------------------------------------------ temp dirs

/** A private temp dir, on tmpfs (/dev/shm) when there is one, removed at cleanup. */
export function makeTempDir(prefix = 'outpost-bench-', { keep = false } = {}) {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  if (!keep) onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ------------------------------------------------------------------ processes

/** Every long-lived child we start: killed (its whole process group) at cleanup. */
const groups = new Set();

onCleanup(() => {
  for (const pid of groups) killGroup(pid, 'SIGKILL');
  groups.clear();
});

export function killGroup(pid, signal = 'SIGTERM') {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Starts a long-lived child in its own process group, tracked for cleanup. */
export function spawnDaemon(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { ...opts, detached: true });
  if (child.pid) groups.add(child.pid);
  child.once('exit', () => groups.delete(child.pid));
  return child;
}

/**
 * Stops a daemon started with spawnDaemon: SIGTERM to its group (or to it alone, so it can
 * stop its own children gracefully), SIGKILL to the group after `graceMs` and after it exits.
 */
export async function stopDaemon(child, graceMs = 5000, { wholeGroup = true } = {}) {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) {
    killGroup(child.pid, 'SIGKILL');
    groups.delete(child.pid);
    return;
  }
  const exited = new Promise((r) => child.once('exit', r));
  if (wholeGroup) killGroup(child.pid, 'SIGTERM');
  else child.kill('SIGTERM');
  const t = setTimeout(() => killGroup(child.pid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
  // Reap what is left of the group (host processes of a killed agent).
  killGroup(child.pid, 'SIGKILL');
  groups.delete(child.pid);
}

/**
 * Runs a command to completion. stdio defaults to ignore/pipe/pipe; returns
 * { code, signal, stdout, stderr, ms }. Rejects when `check` and the exit is not 0.
 */
export function run(cmd, args, opts = {}) {
  const { check = true, input, timeoutMs = 30 * 60_000, stdio, ...rest } = opts;
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, {
      stdio: stdio ?? [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      ...rest,
    });
    const out = [];
    const err = [];
    child.stdout?.on('data', (d) => out.push(d));
    child.stderr?.on('data', (d) => err.push(d));
    if (input !== undefined) child.stdin.end(input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const res = {
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms,
      };
      if (check && code !== 0) {
        const what = [cmd, ...args].join(' ');
        reject(
          new Error(
            `${what.slice(0, 300)} exited with ${code ?? signal}: ${res.stderr.trim().slice(0, 2000)}`,
          ),
        );
      } else resolve(res);
    });
  });
}

/** Runs a shell command line (sh -c); same result as run(). */
export function sh(line, opts = {}) {
  return run('/bin/sh', ['-c', line], opts);
}

// ------------------------------------------------------------------ timing & statistics

export function nowNs() {
  return process.hrtime.bigint();
}

export function msSince(t0) {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Nearest-rank percentile of an unsorted array (p in 0..100). */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN;
  const s = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export function median(values) {
  if (values.length === 0) return Number.NaN;
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarize(values) {
  return {
    n: values.length,
    median: median(values),
    min: values.length ? Math.min(...values) : Number.NaN,
    max: values.length ? Math.max(...values) : Number.NaN,
  };
}

/** Formats a number for tables: 3 significant digits, no exponent. */
export function fmt(v, digits = 3) {
  if (v === undefined || v === null || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 10 ** digits) return Math.round(v).toLocaleString('en-US');
  return Number(v.toPrecision(digits)).toString();
}

// ------------------------------------------------------------------ memory from /proc

function readStatus(pid) {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
}

/** Direct children of a process, from /proc (all its threads). */
export function childPids(pid) {
  const kids = [];
  let tasks;
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return kids;
  }
  for (const tid of tasks) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) for (const c of text.split(/\s+/)) kids.push(Number(c));
    } catch {
      // thread ended
    }
  }
  return kids;
}

/** The pid and all its descendants (bounded walk). */
export function processTree(pid) {
  const out = [];
  const queue = [pid];
  while (queue.length > 0 && out.length < 10_000) {
    const p = queue.shift();
    if (readStatus(p) === null) continue;
    out.push(p);
    queue.push(...childPids(p));
  }
  return out;
}

/** VmRSS of one process in bytes (0 when gone). */
export function rssOf(pid) {
  const s = readStatus(pid);
  const m = s && /VmRSS:\s+(\d+) kB/.exec(s);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Sum of VmRSS over the process and its descendants, with the per-process breakdown. */
export function treeRss(pid) {
  const pids = processTree(pid);
  const parts = pids.map((p) => ({ pid: p, rss: rssOf(p) }));
  return { total: parts.reduce((a, b) => a + b.rss, 0), parts };
}

/** Samples treeRss(pid) every `everyMs` until stopped; returns { stop(): peak bytes }. */
export function sampleRss(pid, everyMs = 20) {
  let peak = treeRss(pid).total;
  const t = setInterval(() => {
    const v = treeRss(pid).total;
    if (v > peak) peak = v;
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      const v = treeRss(pid).total;
      return Math.max(v, peak);
    },
  };
}

// ------------------------------------------------------------------ network

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Runs `fn(i)` for i in 0..n-1 with at most `limit` running at once; results in order. */
export async function mapLimit(n, limit, fn) {
  const results = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return results;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Regular files below `dir`, counted recursively (what a transfer should have written). */
export async function countFiles(dir) {
  let n = 0;
  const walk = async (d) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.isFile()) n++;
    }
  };
  await walk(dir);
  return n;
}
