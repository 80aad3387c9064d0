/**
 * Section "floods", against an AES agent with the default handshake caps
 * (MaxConcurrentHandshakes 100, MaxHandshakesPerAddress 32), run as
 * `nobody` when this runs as root:
 *
 * 1. Wrong-key connections: each completes the 24-byte hello, reads the
 *    25-byte reply and sends one frame encrypted under a random wrong key.
 *    The agent must close each one having sent nothing after its reply
 *    (§3, "the first frame proves the key") and create no session (its log:
 *    "connection opened a session", suppressed lines counted).
 * 2. Stalled handshakes from 127.0.0.2…127.0.0.250 (Linux routes all of
 *    127/8 to loopback): connections that send nothing or part of a hello,
 *    reopened within a second when the agent closes them, while a good
 *    client from 127.0.0.1 connects again and again (handshake + Ping +
 *    CloseSession). Figures: its first-try success rate and the p99 of
 *    handshake + Ping.
 */
import { connect } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { AesFrameEncoder, encodeClientHello, encodeMetaRequest } from '../../dist/protocol/index.js';
import { connectToAgent } from '../../dist/transport/index.js';
import { makeSecrets, startAgent } from '../lib/agents.mjs';
import { mapLimit, percentile, sleep } from '../lib/util.mjs';
import { makeRng } from './gen.mjs';
import { alive, countKind, logLines } from './proc.mjs';

/** One wrong-key connection; resolves { closed, bytesAfter, ms }. */
function wrongKey(port, r) {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    let sentAt = 0;
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({
        closed,
        bytesAfter: Math.max(0, got.length - 25),
        ms: sentAt ? performance.now() - sentAt : -1,
        replied: got.length >= 25,
      });
    };
    const timer = setTimeout(() => finish(false), 15_000);
    s.on('error', () => {});
    s.on('connect', () => s.write(encodeClientHello()));
    s.on('data', (d) => {
      const before = got.length;
      got = Buffer.concat([got, d]);
      if (before < 25 && got.length >= 25) {
        const enc = new AesFrameEncoder(r.bytes(32), got.subarray(1, 17));
        sentAt = performance.now();
        s.write(enc.encode(encodeMetaRequest('Ping', { token: r.u32() | 0 })));
      }
    });
    s.on('close', () => finish(true));
  });
}

/** Keeps `n` stalled handshakes open from 127.0.0.2…250 until stopped; counts what it opened. */
function stalledFlood(port, n, r, maxOpens) {
  const st = { opened: 0, closedByAgent: 0, open: 0, stopped: false };
  const sockets = new Set();
  const open = (i) => {
    if (st.stopped || st.opened >= maxOpens) return;
    st.opened++;
    const s = connect({ host: '127.0.0.1', port, localAddress: `127.0.0.${2 + (i % 249)}` });
    sockets.add(s);
    s.on('error', () => {});
    let connected = false;
    s.on('connect', () => {
      connected = true;
      st.open++;
      // Nothing, or part of a hello: either way the handshake never finishes.
      if (r.chance(0.5)) s.write(encodeClientHello().subarray(0, 1 + r.int(23)));
    });
    s.on('close', () => {
      sockets.delete(s);
      if (connected) st.open--;
      if (st.stopped) return;
      st.closedByAgent++;
      setTimeout(() => open(i), r.int(1000)); // back within a second
    });
  };
  for (let i = 0; i < n; i++) open(i);
  return {
    stats: st,
    stop() {
      st.stopped = true;
      for (const s of sockets) s.destroy();
    },
  };
}

async function goodClientRound(agent) {
  const t0 = performance.now();
  try {
    const { connection } = await connectToAgent({ ...agent.connectOptions, timeoutMs: 10_000 });
    const reply = new Promise((resolve, reject) => {
      connection.once('message', resolve);
      connection.once('close', () => reject(new Error('closed before the Ping reply')));
    });
    connection.send(encodeMetaRequest('Ping', { token: 7 }));
    await reply;
    const ms = performance.now() - t0;
    connection.send(encodeMetaRequest('CloseSession', {}));
    connection.close();
    return { ok: true, ms };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, error: err.message };
  }
}

export async function run(ctx) {
  const q = ctx.quick;
  const r = makeRng((ctx.seed ?? 1) ^ 0x5eed);
  const secrets = await makeSecrets(ctx.tmp);
  const agent = await startAgent({
    dir: ctx.tmp,
    mode: 'aes',
    secrets,
    unprivileged: true,
    maxHandshakes: null,
  });
  ctx.log(`floods: agent ${agent.pid} as ${agent.user} (default handshake caps)`);
  const rows = [];

  // 1. wrong-key connections
  const n = q ? 1000 : 10_000;
  const t0 = Date.now();
  // 24 at a time, under MaxHandshakesPerAddress (32): above it the agent rightly closes this
  // address's oldest unfinished handshakes, some before their reply (the first full run: 17 of 10,000).
  const results = await mapLimit(n, 24, () => wrongKey(agent.port, r));
  const wrongSeconds = (Date.now() - t0) / 1000;
  await sleep(1100); // the log's rate-limit window ends, so suppressed lines are counted below
  const check = await goodClientRound(agent); // one valid session, to flush the "connected" counter
  await sleep(200);
  const sessions = countKind(logLines(agent.logFile), 'connected') - (check.ok ? 1 : 0);
  const replied = results.filter((x) => x.replied).length;
  const closed = results.filter((x) => x.closed).length;
  const bytesAfter = results.reduce((a, x) => a + x.bytesAfter, 0);
  const closeMs = results.filter((x) => x.ms >= 0).map((x) => x.ms);
  ctx.log(
    `floods: ${n} wrong-key connections in ${wrongSeconds.toFixed(1)} s; ${closed} closed, ${bytesAfter} bytes after the reply, ${sessions} sessions`,
  );
  ctx.details.floodsWrongKey = {
    n,
    seconds: wrongSeconds,
    replied,
    closed,
    bytesAfter,
    sessions,
    closeP50: percentile(closeMs, 50),
    closeP99: percentile(closeMs, 99),
  };
  rows.push(
    {
      section: 'floods',
      figure: 'wrong-key connections (handshake replied)',
      value: `${replied} / ${n}`,
      goal: n,
      met: replied === n,
    },
    {
      section: 'floods',
      figure: 'wrong-key: frames/bytes after the handshake reply',
      value: bytesAfter,
      goal: 0,
      met: bytesAfter === 0,
    },
    {
      section: 'floods',
      figure: 'wrong-key: closed by the agent',
      value: `${closed} / ${n} (p99 ${Math.round(percentile(closeMs, 99))} ms)`,
      goal: 'all',
      met: closed === n,
    },
    {
      section: 'floods',
      figure: 'wrong-key: sessions created',
      value: sessions,
      goal: 0,
      met: sessions === 0 && check.ok,
    },
  );

  // 2. stalled handshakes from other addresses, a good client from 127.0.0.1
  const stalled = q ? 300 : 1000;
  const rounds = q ? 40 : 200;
  // The flood runs in a worker thread: on the good client's event loop it would add its own
  // delay to the good client's latency.
  const flood = new Worker(new URL(import.meta.url), {
    workerData: { flood: { port: agent.port, n: stalled, seed: r.u32(), maxOpens: stalled * 200 } },
  });
  await new Promise((resolve, reject) => {
    flood.once('message', resolve);
    flood.once('error', reject);
  });
  const good = [];
  const tFlood = Date.now();
  for (let i = 0; i < rounds && Date.now() - tFlood < 10 * 60_000; i++) {
    good.push(await goodClientRound(agent));
    await sleep(50);
  }
  const floodStats = await new Promise((resolve) => {
    flood.once('message', resolve);
    flood.postMessage('stop');
  });
  await flood.terminate();
  const ok = good.filter((g) => g.ok);
  const p99 = percentile(
    ok.map((g) => g.ms),
    99,
  );
  const p50 = percentile(
    ok.map((g) => g.ms),
    50,
  );
  const isAlive = alive(agent.pid);
  ctx.log(
    `floods: stalled flood ${JSON.stringify(floodStats)}; good client ${ok.length}/${good.length} first try, p50 ${p50?.toFixed(1)} ms, p99 ${p99?.toFixed(1)} ms`,
  );
  for (const g of good.filter((x) => !x.ok).slice(0, 5)) ctx.log(`floods: good client failed: ${g.error}`);
  ctx.details.floodsStalled = {
    stalled,
    rounds: good.length,
    ok: ok.length,
    p50,
    p99,
    max: Math.max(...ok.map((g) => g.ms)),
    flood: floodStats,
    failures: good.filter((x) => !x.ok).slice(0, 10),
  };
  rows.push(
    {
      section: 'floods',
      figure: `stalled handshakes from 127.0.0.2–250 (opened, reopened)`,
      value: `${stalled} (${floodStats.opened})`,
      goal: stalled,
      met: floodStats.opened >= stalled,
    },
    {
      section: 'floods',
      figure: 'good client first-try success',
      value: `${ok.length} / ${good.length}`,
      goal: 'all',
      met: ok.length === good.length && good.length === rounds,
    },
    {
      section: 'floods',
      figure: 'good client handshake+ping p50 / p99',
      value: `${p50?.toFixed(1)} / ${p99?.toFixed(1)} ms`,
      goal: 'p99 ≤ 100 ms',
      met: p99 <= 100,
    },
    { section: 'floods', figure: 'agent alive', value: isAlive, goal: 'yes', met: isAlive },
  );
  await agent.stop();
  return rows;
}

if (!isMainThread && workerData?.flood) {
  const { port, n, seed, maxOpens } = workerData.flood;
  const f = stalledFlood(port, n, makeRng(seed), maxOpens);
  parentPort.postMessage('started');
  parentPort.once('message', () => {
    const stats = { ...f.stats };
    f.stop();
    parentPort.postMessage(stats);
  });
}
