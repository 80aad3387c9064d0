/**
 * Host `kill -9` in the middle of work: an upload, 64 whole-file writes in
 * flight at once, a download and a process's output. After each kill: was
 * every request answered (success or HostCrashed), is the target the old
 * content or the complete new one (never partial), is no temp file left,
 * and does the same connection go on serving (a fresh host)?
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive, connectTo, hostPidOf, kindOf, MiB, row, settleWithin, waitFor } from './agent-faults.mjs';

const sha = (b) => createHash('sha256').update(b).digest('hex');
const ANSWER_MS = 30_000;

/** 'old' | 'new' | 'absent' | 'partial' for the file at `path` against the two contents. */
function stateOf(path, oldSha, newSha) {
  if (!existsSync(path)) return 'absent';
  const h = sha(readFileSync(path));
  return h === oldSha ? 'old' : h === newSha ? 'new' : 'partial';
}

/** Names in `dir` other than `expected` (temp files left behind). */
function strays(dir, expected) {
  try {
    return readdirSync(dir).filter((n) => !expected.includes(n));
  } catch {
    return [];
  }
}

/** Names in `dir` other than `name` that hold at least `min` bytes (a transfer's temp file under way). */
function growingTemp(dir, name, min) {
  for (const n of strays(dir, [name])) {
    try {
      if (statSync(join(dir, n)).size >= min) return true;
    } catch {
      // renamed or removed meanwhile
    }
  }
  return false;
}

/** After a kill: does the same client still get answers (Ping, and a file request served by a new host)? */
async function serving(client, path) {
  const p = await settleWithin(client.ping(), 10_000);
  const e = await settleWithin(client.exists(path), 10_000);
  return Boolean(p.ok && e.ok);
}

/**
 * Kills the host once a temp file beside `target` (in `watchDir`) holds
 * 2 MiB, waits for the transfer `p` to settle, and reports what is left.
 */
async function killMidTransfer({ client, hostPid, p, watchDir, target, old, data, probe }) {
  const midway = await waitFor(() => growingTemp(watchDir, 'target.bin', 2 * MiB), 20_000, 2);
  process.kill(hostPid, 'SIGKILL');
  const r = await settleWithin(p, ANSWER_MS);
  return {
    midway,
    answered: !r.timedOut,
    kind: r.timedOut ? 'none' : r.ok ? 'success' : kindOf(r.error),
    message: r.ok || r.timedOut ? '' : String(r.error?.message ?? r.error),
    state: stateOf(target, sha(old), sha(data)),
    temps: strays(watchDir, ['target.bin']).length,
    serving: await serving(client, probe),
  };
}

async function uploadRound(agent, dir, i, size) {
  const client = await connectTo(agent);
  try {
    const remoteDir = join(agent.root, `upload-${i}`);
    await client.mkdir(remoteDir);
    const target = join(remoteDir, 'target.bin');
    const old = randomBytes(256 * 1024);
    await client.writeFile(target, old);
    const local = join(dir, `upload-${i}.bin`);
    const data = randomBytes(size);
    writeFileSync(local, data);
    const hostPid = await hostPidOf(client);
    const p = client.upload(local, target, { verify: true });
    return await killMidTransfer({
      client,
      hostPid,
      p,
      watchDir: remoteDir,
      target,
      old,
      data,
      probe: target,
    });
  } finally {
    await client.closeSession().catch(() => {});
  }
}

/**
 * A separate process that SIGKILLs `pid` once it has read `bytes` more (its
 * /proc/PID/io rchar): the kill then lands while requests are in flight
 * however busy this process is sending them. Resolves { fired } once armed.
 */
function armKiller(pid, bytes) {
  const script = `
    const fs = require('node:fs');
    const rchar = () => Number(/rchar: (\\d+)/.exec(fs.readFileSync('/proc/${pid}/io', 'utf8'))[1]);
    const start = rchar();
    process.stdout.write('armed\\n');
    const deadline = Date.now() + 20000;
    const t = setInterval(() => {
      let now;
      try { now = rchar(); } catch { process.exit(2); }
      if (now - start >= ${bytes}) { process.kill(${pid}, 'SIGKILL'); process.stdout.write('fired\\n'); process.exit(0); }
      if (Date.now() > deadline) process.exit(1);
    }, 1);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const fired = new Promise((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`killer exited ${code}`))));
  });
  fired.catch(() => {});
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('armed')) resolve({ fired });
    });
    child.once('error', reject);
    fired.catch(reject);
  });
}

async function manyWritesRound(agent, i) {
  const client = await connectTo(agent);
  try {
    const remoteDir = join(agent.root, `many-${i}`);
    await client.mkdir(remoteDir);
    const names = Array.from({ length: 64 }, (_, k) => `f${k}.bin`);
    const olds = names.map(() => randomBytes(16 * 1024));
    for (const [k, n] of names.entries())
      if (k % 2 === 0) await client.writeFile(join(remoteDir, n), olds[k]);
    const news = names.map(() => randomBytes(MiB));
    const hostPid = await hostPidOf(client);
    // Sending 64 MiB keeps this event loop busy, so the kill comes from another process.
    const killer = await armKiller(hostPid, 8 * MiB);
    let settled = 0;
    const ps = names.map((n, k) =>
      client.writeFile(join(remoteDir, n), news[k]).finally(() => {
        settled++;
      }),
    );
    // HostCrashed may reach us before the killer says it fired: handled here, judged below.
    for (const p of ps) p.catch(() => {});
    const fired = await settleWithin(killer.fired, 20_000);
    const settledAtKill = settled;
    if (!fired.ok) process.kill(hostPid, 'SIGKILL');
    const r = await settleWithin(Promise.allSettled(ps), ANSWER_MS);
    const results = r.ok ? r.value : [];
    const kinds = {};
    for (const x of results) {
      const k = x.status === 'fulfilled' ? 'success' : kindOf(x.reason);
      kinds[k] = (kinds[k] ?? 0) + 1;
    }
    const states = names.map((n, k) =>
      stateOf(join(remoteDir, n), k % 2 === 0 ? sha(olds[k]) : '-', sha(news[k])),
    );
    return {
      midway: settledAtKill < names.length,
      inFlightAtKill: names.length - settledAtKill,
      answered: results.length === names.length,
      answeredCount: settled,
      total: names.length,
      kinds,
      partial: states.filter((s) => s === 'partial').length,
      states,
      temps: strays(remoteDir, names).length,
      tempNames: strays(remoteDir, names),
      serving: await serving(client, join(remoteDir, names[0])),
    };
  } finally {
    await client.closeSession().catch(() => {});
  }
}

async function downloadRound(agent, dir, i, size) {
  const client = await connectTo(agent);
  try {
    const remote = join(agent.root, `download-${i}.bin`);
    const data = randomBytes(size);
    const staged = join(dir, `download-src-${i}.bin`);
    writeFileSync(staged, data);
    await client.upload(staged, remote, { verify: false });
    const localDir = join(dir, `download-${i}`);
    mkdirSync(localDir, { recursive: true });
    const target = join(localDir, 'target.bin');
    const old = randomBytes(256 * 1024);
    writeFileSync(target, old);
    const hostPid = await hostPidOf(client);
    const p = client.download(remote, target, { verify: true });
    return await killMidTransfer({
      client,
      hostPid,
      p,
      watchDir: localDir,
      target,
      old,
      data,
      probe: remote,
    });
  } finally {
    await client.closeSession().catch(() => {});
  }
}

async function outputRound(agent) {
  const client = await connectTo(agent);
  try {
    const hostPid = await hostPidOf(client);
    // Bounded: at most 1 GiB of zeros, and the host is killed long before.
    const proc = await client.spawn('/bin/sh', ['-c', 'exec head -c 1073741824 /dev/zero']);
    let got = 0;
    proc.stdout.on('data', (c) => {
      got += c.length;
    });
    proc.stdout.on('error', () => {});
    proc.stderr.resume();
    const streamEnded = new Promise((resolve) => {
      proc.stdout.once('end', resolve);
      proc.stdout.once('error', resolve);
      proc.stdout.once('close', resolve);
    });
    const midway = await waitFor(() => got >= 4 * MiB, 20_000, 2);
    process.kill(hostPid, 'SIGKILL');
    const r = await settleWithin(proc.exited, ANSWER_MS);
    const ended = await settleWithin(streamEnded, 5000);
    const childGone = await waitFor(() => !alive(proc.pid), 5000, 20);
    return {
      midway,
      answered: !r.timedOut && !ended.timedOut,
      kind: r.timedOut ? 'none' : r.ok ? 'success' : kindOf(r.error),
      message: r.ok || r.timedOut ? '' : String(r.error?.message ?? r.error),
      state: 'n/a',
      temps: 0,
      childGone,
      serving: await serving(client, agent.root),
    };
  } finally {
    await client.closeSession().catch(() => {});
  }
}

function tally(list, f) {
  const t = {};
  for (const x of list) {
    const k = f(x);
    t[k] = (t[k] ?? 0) + 1;
  }
  return Object.entries(t)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** Rows for one scenario's rounds. */
function rowsOf(what, rounds, { intact = true } = {}) {
  const n = rounds.length;
  const s = `faults: host kill -9 during ${what}`;
  const good = (r) => r.answered && ['success', 'HostCrashed'].includes(r.kind);
  const answered = rounds.filter(good).length;
  const odd = rounds.find((r) => !good(r) && r.message);
  const rows = [
    row(
      s,
      'killed mid-transfer',
      `${rounds.filter((r) => r.midway).length}/${n}`,
      `${n}/${n}`,
      rounds.every((r) => r.midway),
    ),
    row(
      s,
      'every request answered (success or HostCrashed)',
      `${answered}/${n} (${tally(rounds, (r) => r.kind)})${odd ? `; e.g. ${odd.message.replace(/\/\S*\//, '…/').slice(0, 160)}` : ''}`,
      'all',
      answered === n,
    ),
  ];
  if (intact)
    rows.push(
      row(
        s,
        'target intact (old or complete new)',
        tally(rounds, (r) => r.state),
        'never partial',
        rounds.every((r) => r.state === 'old' || r.state === 'new'),
      ),
      row(
        s,
        'temp files left',
        rounds.reduce((a, r) => a + r.temps, 0),
        '0',
        rounds.every((r) => r.temps === 0),
      ),
    );
  rows.push(
    row(
      s,
      'connection keeps serving',
      `${rounds.filter((r) => r.serving).length}/${n}`,
      `${n}/${n}`,
      rounds.every((r) => r.serving),
    ),
  );
  return rows;
}

/** Every host-kill row; `rounds` repetitions of each scenario. */
export async function hostKillRows(ctx, agent, dir) {
  const rounds = ctx.quick ? 1 : 3;
  const size = ctx.quick ? 64 * MiB : 256 * MiB;
  const up = [];
  const many = [];
  const down = [];
  const out = [];
  for (let i = 0; i < rounds; i++) {
    ctx.log(`faults: host kill during upload, round ${i + 1}/${rounds}`);
    up.push(await uploadRound(agent, dir, i, size));
    ctx.log(`faults: host kill with 64 writes in flight, round ${i + 1}/${rounds}`);
    many.push(await manyWritesRound(agent, i));
    ctx.log(`faults: host kill during download, round ${i + 1}/${rounds}`);
    down.push(await downloadRound(agent, dir, i, size));
    ctx.log(`faults: host kill during process output, round ${i + 1}/${rounds}`);
    out.push(await outputRound(agent));
  }
  const m = 'faults: host kill -9 with 64 × 1 MiB writes in flight';
  const total = many.reduce((a, r) => a + r.total, 0);
  const answered = many.reduce((a, r) => a + (r.answered ? r.total : r.answeredCount), 0);
  const kinds = {};
  for (const r of many) for (const [k, v] of Object.entries(r.kinds)) kinds[k] = (kinds[k] ?? 0) + v;
  const leftover = many.flatMap((r) => r.tempNames)[0];
  const onlyGood = Object.keys(kinds).every((k) => k === 'success' || k === 'HostCrashed');
  return [
    ...rowsOf(`an upload (${size / MiB} MiB)`, up),
    row(
      m,
      'every request answered (success or HostCrashed)',
      `${answered}/${total}, ${many.map((r) => r.inFlightAtKill).join('/')} in flight at the kills (${Object.entries(
        kinds,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')})`,
      'all',
      answered === total && onlyGood,
    ),
    row(
      m,
      'targets intact (old, complete new or absent)',
      `partial ${many.reduce((a, r) => a + r.partial, 0)}`,
      'partial 0',
      many.every((r) => r.partial === 0),
    ),
    row(
      m,
      'temp files left',
      `${many.reduce((a, r) => a + r.temps, 0)}${leftover ? ` (e.g. ${leftover}: the host's own temp file of a write it was killed in)` : ''}`,
      '0',
      many.every((r) => r.temps === 0),
    ),
    row(
      m,
      'connection keeps serving',
      `${many.filter((r) => r.serving).length}/${many.length}`,
      'all',
      many.every((r) => r.serving),
    ),
    ...rowsOf(`a download (${size / MiB} MiB)`, down),
    ...rowsOf('process output', out, { intact: false }),
    row(
      'faults: host kill -9 during process output',
      'the process is gone too',
      `${out.filter((r) => r.childGone).length}/${out.length}`,
      'all',
      out.every((r) => r.childGone),
    ),
  ];
}
