/**
 * Section "live": generated frames against a live agent in modes none, TLS
 * and AES. The agent runs as `nobody` when this runs as root, with
 * AllowedRoots = its own temp dir (bench/lib/agents.mjs, `unprivileged`):
 * generated requests name any path, "/" included.
 *
 * Each connection (a *batch*) opens a new session, sends generated frames
 * (valid requests with random fields, mutated ones, random agent types and
 * codes, truncated and oversized arguments, Cancels), then a Ping to sync,
 * waits for every product answer, and ends the session: with CloseSession,
 * or with a frame that is a protocol error (a declared length up to 2^31−1,
 * a cut frame, undecryptable bytes, a malformed meta message), after which
 * it expects the close and ends the session from a new connection.
 *
 * The oracle (`expectation`, live-frames.mjs) says what the contract answers to each frame
 * (§3–§6): meta replies in order, product replies by token, none for Cancel
 * and a successful UpdateAgent, a close for a protocol error. Meanwhile a
 * good client (the SDK) pings and calls exists() every 100 ms.
 */
import { decodeMetaResult, decodeReply, encodeMetaRequest } from '../../dist/protocol/index.js';
import { connectToAgent } from '../../dist/transport/index.js';
import { makeSecrets, startAgent } from '../lib/agents.mjs';
import { loadSdk } from '../lib/outpost.mjs';
import { sleep } from '../lib/util.mjs';
import { makeRng } from './gen.mjs';
import { describe, expectation, fatalBytes, messageGen, safe } from './live-frames.mjs';
import { agentCounts, alive, logLines, settle } from './proc.mjs';

const MODES = ['none', 'ssl', 'aes'];
const LABEL = { none: 'none', ssl: 'TLS', aes: 'AES' };
const WORKERS = 4;

/** Tallies for one mode. */
function newTally() {
  return {
    frames: 0,
    batches: 0,
    expected: 0,
    answeredOnce: 0,
    missing: 0,
    duplicate: 0,
    unexpected: 0,
    fatal: 0,
    fatalClosed: 0,
    unexpectedCloses: 0,
    closeSessionOk: 0,
    closeSessionSent: 0,
    connectFailures: 0,
    badReplies: 0,
    samples: [],
    phaseMs: { send: 0, answers: 0 },
    slowest: { ms: 0 },
  };
}

function note(t, what) {
  if (t.samples.length < 20) t.samples.push(what);
}

/** One connection's worth of generated frames; updates the tally. */
async function batch(agent, r, budget, t) {
  const dir = agent.dir;
  const mode = agent.mode;
  let conn;
  try {
    conn = await connectToAgent({ ...agent.connectOptions, timeoutMs: 10_000 });
  } catch (err) {
    t.connectFailures++;
    note(t, `connect: ${err.message}`);
    return 0;
  }
  t.batches++;
  const tStart = performance.now();
  const c = conn.connection;
  const metaQ = [];
  const want = new Map(); // token → { n: expected replies, opt: optional ones }
  const got = new Map();
  let closed = false;
  const closedP = new Promise((resolve) =>
    c.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  let syncWaiter = null;
  c.on('message', (m) => {
    let rep;
    try {
      rep = decodeReply(m);
    } catch (err) {
      t.badReplies++;
      note(t, `undecodable reply: ${err.message}`);
      return;
    }
    if (rep.kind === 'response' || rep.kind === 'error') {
      got.set(rep.token, (got.get(rep.token) ?? 0) + 1);
      const w = want.get(rep.token);
      if (w) {
        const ms = performance.now() - w.at;
        if (ms > t.slowest.ms)
          t.slowest = {
            ms: Math.round(ms),
            what: w.what,
            reply: rep.kind === 'error' ? rep.errorKind : 'Response',
          };
      }
      return;
    }
    if (rep.kind === 'event') return;
    const code = rep.kind === 'meta' ? rep.command : rep.requestCommand;
    const pingToken =
      rep.kind === 'meta' && code === 3 ? decodeMetaResult('Ping', rep.body).token : undefined;
    while (metaQ.length > 0) {
      const e = metaQ.shift();
      const match =
        e.cmd === code &&
        (e.reply === 'either' || e.reply === rep.kind) &&
        (e.pingToken === undefined || rep.kind !== 'meta' || e.pingToken === pingToken);
      if (match) {
        if (!e.harness && !e.optional) t.answeredOnce++;
        if (e.sync) syncWaiter?.();
        return;
      }
      if (e.optional) continue; // a successful UpdateAgent: no reply
      if (!e.harness) t.missing++;
      note(t, `${mode}: meta reply ${rep.kind} ${code} where ${e.reply} ${e.cmd} was due`);
    }
    t.unexpected++;
    note(t, `${mode}: unexpected meta reply ${rep.kind} ${code}`);
  });
  let valid = false;
  let syncToken = 0x40000000 + r.int(1 << 29);
  const sendHarnessPing = () => {
    const token = syncToken++;
    metaQ.push({ cmd: 3, reply: 'meta', pingToken: token, harness: true, sync: true });
    c.send(encodeMetaRequest('Ping', { token }));
    valid = true;
  };
  const sync = async (ms) => {
    const done = new Promise((resolve) => {
      syncWaiter = resolve;
    });
    sendHarnessPing();
    const ok = await Promise.race([done, closedP.then(() => false), sleep(ms).then(() => false)]);
    syncWaiter = null;
    return ok !== false;
  };
  // Most batches open their session first, so frames reach past the first-frame rules.
  if (r.chance(0.8)) sendHarnessPing();
  const gen = messageGen(r, dir, 1 + r.int(3));
  const n = Math.min(budget, 50 + r.int(400));
  let sent = 0;
  const ending = r.chance(0.3) ? 'fatal' : 'close';
  let fatalMessage = null;
  for (let tries = 0; sent < n && tries < n * 20 && !closed; tries++) {
    const m = gen();
    if (m.length < 5 || !safe(m)) continue;
    const e = expectation(m, mode, valid);
    if (e.kind === 'fatal' || e.kind === 'close-session') {
      if (e.kind === 'fatal' && ending === 'fatal' && !fatalMessage) fatalMessage = m;
      continue;
    }
    if (e.becomesValid) valid = true;
    if (e.kind === 'meta') {
      metaQ.push(e);
      if (!e.optional) t.expected++;
    } else if (e.kind === 'product') {
      const w = want.get(e.token) ?? { n: 0, opt: 0, at: performance.now(), what: describe(m) };
      if (e.optional) w.opt++;
      else {
        w.n++;
        t.expected++;
      }
      want.set(e.token, w);
    }
    c.send(m);
    sent++;
    // A successful UpdateAgent has no reply: a Ping right after keeps the meta order unambiguous.
    if (e.kind === 'meta' && e.optional) sendHarnessPing();
    if (c.writableNeedDrain) await Promise.race([new Promise((res) => c.once('drain', res)), closedP]);
  }
  t.frames += sent;
  const tSent = performance.now();
  // Sync: the Ping's reply comes after every earlier meta reply; product replies may take longer.
  const synced = closed ? false : await sync(15_000);
  if (!synced) note(t, `${mode}: no sync reply (${closed ? 'closed' : 'timeout'})`);
  const deadline = Date.now() + 15_000;
  const pending = () => [...want].some(([tok, w]) => (got.get(tok) ?? 0) < w.n);
  while (!closed && pending() && Date.now() < deadline) await sleep(20);
  const tAnswered = performance.now();
  t.phaseMs.send += tSent - tStart;
  t.phaseMs.answers += tAnswered - tSent;
  for (const [tok, w] of want) {
    const g = got.get(tok) ?? 0;
    if (g >= w.n && g <= w.n + w.opt) t.answeredOnce += w.n;
    else if (g < w.n) {
      t.answeredOnce += g;
      t.missing += w.n - g;
      note(t, `${mode}: token ${tok}: ${g} replies, ${w.n} due`);
    } else {
      t.answeredOnce += w.n;
      t.duplicate += g - w.n - w.opt;
      note(t, `${mode}: token ${tok}: ${g} replies, ${w.n} due`);
    }
  }
  for (const [tok, g] of got)
    if (!want.has(tok)) {
      t.unexpected += g;
      note(t, `${mode}: ${g} replies for token ${tok} never sent`);
    }
  for (const e of metaQ)
    if (!e.optional && !e.harness) {
      t.missing++;
      note(t, `${mode}: meta ${e.reply} ${e.cmd} never answered`);
    }
  metaQ.length = 0;
  if (closed) {
    t.unexpectedCloses++;
    note(t, `${mode}: the agent closed the connection before the batch ended`);
    await endSession(agent, conn.sessionId, t);
    return sent;
  }
  if (ending === 'fatal' && sent < budget) {
    t.fatal++;
    sent++;
    t.frames++;
    if (fatalMessage && r.chance(0.5)) c.send(fatalMessage);
    else {
      const f = fatalBytes(r, mode);
      c.socket.write(f.bytes);
      if (f.cut) c.socket.end();
    }
    const ok = await Promise.race([closedP.then(() => true), sleep(10_000).then(() => false)]);
    if (ok) t.fatalClosed++;
    else note(t, `${mode}: a protocol error did not close the connection`);
    c.destroy();
    await endSession(agent, conn.sessionId, t);
    return sent;
  }
  t.closeSessionSent++;
  metaQ.push({ cmd: 5, reply: 'meta', harness: true });
  const closeReply = new Promise((resolve) =>
    c.on('message', (m) => {
      if (m.length >= 4 && m.readInt32LE(0) === 5) resolve(true);
    }),
  );
  c.send(encodeMetaRequest('CloseSession', {}));
  const ok = await Promise.race([
    Promise.all([closeReply, closedP]).then(() => true),
    sleep(10_000).then(() => false),
  ]);
  if (ok) t.closeSessionOk++;
  else note(t, `${mode}: CloseSession: no reply and close`);
  c.destroy();
  return sent;
}

/** Ends a session whose connection a protocol error closed (the harness's own traffic). */
async function endSession(agent, sessionId, t) {
  try {
    const { connection } = await connectToAgent({ ...agent.connectOptions, sessionId, timeoutMs: 10_000 });
    const closed = new Promise((resolve) => connection.once('close', resolve));
    connection.send(encodeMetaRequest('CloseSession', {}));
    await Promise.race([closed, sleep(10_000)]);
    connection.destroy();
  } catch (err) {
    note(t, `ending session ${sessionId}: ${err.message}`);
  }
}

/** The SDK client that must be served throughout: a ping or an exists() every 100 ms. */
async function goodClient(agent, stopSignal) {
  const { AgentClient } = await loadSdk();
  const s = { calls: 0, ok: 0, maxMs: 0, errors: [] };
  let client = await AgentClient.connect({ ...agent.connectOptions, timeoutMs: 10_000 });
  await client.exists('good.txt');
  const ready = { client };
  const loop = (async () => {
    for (let i = 0; !stopSignal.stopped && i < 100_000; i++) {
      const t0 = performance.now();
      s.calls++;
      try {
        if (i % 2 === 0) await client.ping({ signal: AbortSignal.timeout(10_000) });
        else await client.exists('good.txt', { signal: AbortSignal.timeout(10_000) });
        s.ok++;
        s.maxMs = Math.max(s.maxMs, performance.now() - t0);
      } catch (err) {
        if (s.errors.length < 5) s.errors.push(err.message);
        await client.close().catch(() => {});
        client = await AgentClient.connect({ ...agent.connectOptions, timeoutMs: 10_000 }).catch(
          () => client,
        );
        ready.client = client;
      }
      await sleep(100);
    }
  })();
  return {
    stats: s,
    async finish() {
      stopSignal.stopped = true;
      await loop;
      await ready.client.closeSession().catch(() => {});
      await ready.client.close().catch(() => {});
    },
  };
}

async function fuzzMode(ctx, mode, frames, secrets, seed) {
  const label = `live ${LABEL[mode]}`;
  const agent = await startAgent({ dir: ctx.tmp, mode, secrets, unprivileged: true });
  ctx.log(`${label}: agent ${agent.pid} as ${agent.user}, AllowedRoots ${agent.dir}, ${frames} frames`);
  const stopSignal = { stopped: false };
  const good = await goodClient(agent, stopSignal);
  await sleep(1000);
  const baseline = agentCounts(agent.pid);
  const t = newTally();
  const r0 = makeRng(seed);
  const timeLimitMs = ctx.quick ? 3 * 60_000 : 20 * 60_000;
  const t0 = Date.now();
  let left = frames;
  let lastLog = Date.now();
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      const r = makeRng(r0.u32() ^ w);
      while (left > 0 && Date.now() - t0 < timeLimitMs && alive(agent.pid)) {
        const take = Math.min(left, 450);
        left -= take;
        const sent = await batch(agent, r, take, t);
        left += take - sent;
        if (sent === 0) await sleep(200); // a connect failure: do not spin
        if (Date.now() - lastLog > 15_000) {
          lastLog = Date.now();
          ctx.log(
            `${label}: ${t.frames} frames, ${t.batches} connections, ${t.missing} missing, good client ${good.stats.ok}/${good.stats.calls}`,
          );
        }
      }
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  const isAlive = alive(agent.pid);
  await good.finish();
  const after = await settle(agent.pid, baseline, 60_000);
  const errorsLogged = logLines(agent.logFile).filter((l) => l.level >= 50);
  await agent.stop();
  ctx.log(
    `${label}: ${t.frames} frames in ${seconds.toFixed(0)} s; ${JSON.stringify({ ...t, samples: undefined })}`,
  );
  for (const s of t.samples) ctx.log(`${label}: ${s}`);
  for (const e of errorsLogged.slice(0, 5))
    ctx.log(`${label}: agent logged error: ${e.msg} ${JSON.stringify(e.err ?? {}).slice(0, 300)}`);
  ctx.details[`live-${mode}`] = {
    ...t,
    seconds,
    baseline,
    after,
    good: good.stats,
    errorsLogged: errorsLogged.length,
    seed,
  };
  const g = good.stats;
  return [
    { section: label, figure: 'generated frames', value: t.frames, goal: frames, met: t.frames >= frames },
    { section: label, figure: 'agent alive', value: isAlive, goal: 'yes', met: isAlive },
    {
      section: label,
      figure: 'answered exactly once',
      value: `${t.answeredOnce} / ${t.expected}`,
      goal: 'all',
      met: t.answeredOnce === t.expected,
    },
    {
      section: label,
      figure: 'missing / duplicate / unexpected replies',
      value: `${t.missing} / ${t.duplicate} / ${t.unexpected}`,
      goal: '0 / 0 / 0',
      met: t.missing + t.duplicate + t.unexpected + t.badReplies === 0,
    },
    {
      section: label,
      figure: 'connections closed unexpectedly',
      value: t.unexpectedCloses,
      goal: 0,
      met: t.unexpectedCloses === 0,
    },
    {
      section: label,
      figure: 'protocol errors that closed the connection',
      value: `${t.fatalClosed} / ${t.fatal}`,
      goal: 'all',
      met: t.fatalClosed === t.fatal,
    },
    {
      section: label,
      figure: 'CloseSession answered and closed',
      value: `${t.closeSessionOk} / ${t.closeSessionSent}`,
      goal: 'all',
      met: t.closeSessionOk === t.closeSessionSent && t.connectFailures === 0,
    },
    {
      section: label,
      figure: 'good client calls served',
      value: `${g.ok} / ${g.calls} (max ${Math.round(g.maxMs)} ms)`,
      goal: 'all',
      met: g.ok === g.calls && g.calls > 0,
    },
    {
      section: label,
      figure: 'host processes after (baseline)',
      value: `${after.hosts} (${baseline.hosts})`,
      goal: '≤ baseline',
      met: after.hosts >= 0 && after.hosts <= baseline.hosts,
    },
    {
      section: label,
      figure: 'agent FDs after (baseline)',
      value: `${after.fds} (${baseline.fds})`,
      goal: '≤ baseline',
      met: after.fds >= 0 && after.fds <= baseline.fds,
    },
    {
      section: label,
      figure: 'errors in the agent log',
      value: errorsLogged.length,
      goal: 0,
      met: errorsLogged.length === 0,
    },
  ];
}

export async function run(ctx) {
  const total = ctx.quick ? 3000 : 100_000;
  const secrets = await makeSecrets(ctx.tmp);
  const rows = [];
  for (const [i, mode] of MODES.entries()) {
    const frames = Math.ceil(total / MODES.length);
    rows.push(...(await fuzzMode(ctx, mode, frames, secrets, (ctx.seed ?? 1) + i)));
  }
  return rows;
}
