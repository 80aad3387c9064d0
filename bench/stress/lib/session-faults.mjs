/**
 * Faults of the session's ends: a client process SIGKILL'd while its
 * process prints, and a new client resuming the session (same key, session
 * ID) for the rest; and the agent itself `kill -9`'d and started again on
 * the same config file.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  alive,
  connectTo,
  hostPids,
  kindOf,
  MiB,
  pinPort,
  restartAgent,
  row,
  settleWithin,
  startFaultAgent,
  waitFor,
} from './agent-faults.mjs';
import { readLines, resumeAndFollow } from './resume-faults.mjs';

const CHILD = fileURLToPath(new URL('./child-faults.mjs', import.meta.url));
const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Starts the child client; resolves { child, sessionId, token } once its process runs. */
function startChild(agent, script, outFile) {
  const { host, port, mode, key } = agent.connectOptions;
  const env = {
    ...process.env,
    FAULT_CHILD: JSON.stringify({ connect: { host, port, mode, key: key.toString('hex') }, script, outFile }),
  };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, [CHILD], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the child client did not start: ${err.slice(-800)}`));
    }, 20_000);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /READY (\d+) (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, sessionId: Number(m[1]), token: Number(m[2]) });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the child client exited (${code}) before starting: ${err.slice(-800)}`));
    });
  });
}

const lineCount = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').length - 1 : 0);

async function killChild(child) {
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/**
 * Gated: the process prints 1..K, waits for a gate file, prints K+1..N.
 * The client dies once it has 1..K; the gate opens while the session is
 * detached, so K+1..N are buffered by the agent and must all reach the
 * resumed client, once, in order.
 */
async function gatedRound(agent, dir, i, k, n) {
  const gate = join(agent.root, `gate-${i}`);
  const outFile = join(dir, `child-gated-${i}.out`);
  const script = [
    `i=1; while [ $i -le ${k} ]; do echo "line $i"; i=$((i+1)); done`,
    `w=0; while [ ! -e '${gate}' ] && [ $w -lt 600 ]; do sleep 0.05; w=$((w+1)); done`,
    `while [ $i -le ${n} ]; do echo "line $i"; i=$((i+1)); done`,
  ].join('\n');
  const { child, sessionId, token } = await startChild(agent, script, outFile);
  const gotK = await waitFor(() => lineCount(outFile) >= k, 20_000, 5);
  await killChild(child);
  writeFileSync(gate, '');
  // Let the second half be printed into the detached session's buffer.
  await waitFor(() => false, 500, 100);
  const b = await resumeAndFollow(agent.connectOptions, sessionId, token, 30_000);
  const a = readLines(readFileSync(outFile, 'utf8'));
  const all = readLines(readFileSync(outFile, 'utf8') + b.stdout.toString('utf8'));
  const complete =
    all.inOrder && all.duplicates === 0 && all.first === 1 && all.last === n && all.numbers.length === n;
  return {
    gotK,
    resumed: b.resumed,
    a,
    b: readLines(b.stdout.toString('utf8')),
    complete,
    exit: b.exit,
    errors: b.errors,
  };
}

/**
 * Continuous: the client dies while output flows. What the agent had
 * already written to the dead socket may be lost (§7: TCP cannot tell what
 * the peer received); the rest must come in order, once, to the end.
 */
async function flowingRound(agent, dir, i, n) {
  const outFile = join(dir, `child-flowing-${i}.out`);
  const script = `i=1; while [ $i -le ${n} ]; do echo "line $i"; i=$((i+1)); [ $((i % 200)) -eq 0 ] && sleep 0.02; done; true`;
  const { child, sessionId, token } = await startChild(agent, script, outFile);
  await waitFor(() => lineCount(outFile) >= n / 10, 20_000, 2);
  await killChild(child);
  const b = await resumeAndFollow(agent.connectOptions, sessionId, token, 60_000);
  const a = readLines(readFileSync(outFile, 'utf8'));
  const bl = readLines(b.stdout.toString('utf8'));
  const ok =
    b.resumed &&
    a.inOrder &&
    a.duplicates === 0 &&
    bl.inOrder &&
    bl.duplicates === 0 &&
    bl.last === n &&
    (bl.numbers.length === 0 || bl.first > a.last) &&
    b.exit?.exitCode === 0;
  return { ok, lost: bl.numbers.length ? bl.first - a.last - 1 : n - a.last, a, b: bl, exit: b.exit };
}

/** The client-killed-and-resumed rows. */
export async function resumeRows(ctx, agent, dir) {
  const rounds = ctx.quick ? 1 : 3;
  const gated = [];
  const flowing = [];
  for (let i = 0; i < rounds; i++) {
    ctx.log(`faults: client killed mid-output and resumed, round ${i + 1}/${rounds}`);
    gated.push(await gatedRound(agent, dir, i, 5000, 10_000));
    flowing.push(await flowingRound(agent, dir, i, 20_000));
  }
  const s = 'faults: client SIGKILL mid-output, new client resumes';
  const g0 = gated[0];
  return [
    row(
      s,
      'all output, in order, once (process paused at the kill)',
      `${gated.filter((g) => g.complete && g.exit?.exitCode === 0).length}/${rounds} (e.g. dead client 1–${g0.a.last}, resumed ${g0.b.first}–${g0.b.last}, ${g0.b.duplicates} dup, exit ${g0.exit?.exitCode ?? 'none'}${g0.errors.length ? `, ${g0.errors.join('; ')}` : ''})`,
      'all',
      gated.every((g) => g.gotK && g.resumed && g.complete && g.exit?.exitCode === 0),
    ),
    row(
      s,
      'output flowing at the kill: in order, once, to the end',
      `${flowing.filter((f) => f.ok).length}/${rounds} (lost in flight: ${flowing.map((f) => f.lost).join(', ')} lines)`,
      'all; loss only of what was on the dead socket (§7)',
      flowing.every((f) => f.ok),
    ),
  ];
}

/** Agent kill -9 and restart on the same config. */
export async function restartRows(ctx, secrets) {
  const s = 'faults: agent kill -9 and restart';
  const agent = await startFaultAgent({ dir: ctx.tmp, secrets });
  try {
    pinPort(agent);
    const configBefore = sha(readFileSync(agent.configFile));
    const c1 = await connectTo(agent, { reconnect: { retries: 60, delayMs: 250 } });
    const c2 = await connectTo(agent);
    const files = new Map();
    const count = ctx.quick ? 20 : 100;
    for (let i = 0; i < count; i++) {
      const data = randomBytes(1024 * (1 + ((i * 37) % 1024)));
      const p = join(agent.root, `kept-${i}.bin`);
      await c1.writeFile(p, data);
      files.set(p, sha(data));
    }
    // Writes in flight at the kill: each version complete, so the file must hold one of them.
    const busy = join(agent.root, 'busy.bin');
    const versions = new Set();
    let writing = true;
    const writer = (async () => {
      for (let v = 0; writing && v < 100_000; v++) {
        const data = Buffer.alloc(2 * MiB, v & 0xff);
        versions.add(sha(data));
        const r = await settleWithin(c2.writeFile(busy, data), 10_000);
        if (!r.ok) return;
      }
    })();
    await waitFor(() => versions.size >= 3, 10_000, 5);
    const hostsBefore = hostPids(agent.pid);
    process.kill(agent.pid, 'SIGKILL');
    const agentGone = await waitFor(() => !alive(agent.pid), 10_000, 20);
    writing = false;
    await settleWithin(writer, 15_000);
    const hostsGone = await waitFor(() => hostsBefore.every((p) => !alive(p)), 10_000, 50);
    const restarted = await restartAgent(agent);
    try {
      const configAfter = sha(readFileSync(agent.configFile));
      // c1 reconnects on its own (a new session: the old one died with the agent).
      let attempts = 0;
      let c1ok = false;
      for (; attempts < 5 && !c1ok; attempts++) {
        const r = await settleWithin(c1.exists(join(agent.root, 'kept-0.bin')), 20_000);
        c1ok = Boolean(r.ok && r.value === true);
        if (!c1ok) ctx.log(`faults: c1 after restart: ${r.timedOut ? 'timeout' : kindOf(r.error)}`);
      }
      const fresh = await settleWithin(connectTo(agent), 15_000);
      const c3 = fresh.ok ? fresh.value : null;
      let intact = 0;
      for (const [p, h] of c3 ? files : []) {
        const r = await settleWithin(c3.readFile(p), 10_000);
        if (r.ok && sha(r.value) === h) intact++;
      }
      const busyState = existsSync(busy)
        ? versions.has(sha(readFileSync(busy)))
          ? 'a complete version'
          : 'partial'
        : 'absent';
      const expected = new Set(
        [...files.keys()].map((p) => p.slice(agent.root.length + 1)).concat('busy.bin'),
      );
      const temps = readdirSync(agent.root).filter((n) => !expected.has(n) && !n.startsWith('gate-'));
      await c3?.closeSession().catch(() => {});
      await c1.closeSession().catch(() => {});
      await c2.close().catch(() => {});
      return [
        row(
          s,
          'configuration intact',
          configAfter === configBefore ? 'same bytes' : 'changed',
          'same bytes',
          configAfter === configBefore,
        ),
        row(s, 'files intact', `${intact}/${files.size}`, 'all', intact === files.size),
        row(
          s,
          'file being written at the kill',
          busyState,
          'a complete version',
          busyState === 'a complete version',
        ),
        row(s, 'temp files left by the kill', temps.length, '0', temps.length === 0),
        row(
          s,
          'agent and host processes gone after kill -9',
          `${agentGone && hostsGone ? 'yes' : 'no'} (${hostsBefore.length} hosts)`,
          'yes',
          agentGone && hostsGone,
        ),
        row(
          s,
          'client with reconnect: next call succeeds',
          c1ok ? `yes (attempt ${attempts})` : 'no',
          'yes',
          c1ok,
        ),
        row(
          s,
          'new client after restart',
          c3 ? 'served' : `refused (${fresh.timedOut ? 'timeout' : kindOf(fresh.error)})`,
          'served',
          c3 !== null,
        ),
      ];
    } finally {
      await restarted.stop();
    }
  } finally {
    await agent.stop();
  }
}
