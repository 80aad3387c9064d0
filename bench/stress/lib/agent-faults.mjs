/**
 * What the faults and soak modules share: an agent started the stress way
 * (through bench/lib/agents.mjs, unprivileged when we are root, AllowedRoots
 * = its own temp dir), the pid of a session's host, per-process RSS and FD
 * counts from /proc, bounded waits, and a restart of a killed agent on the
 * very same config file.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as agents from '../../lib/agents.mjs';
import { loadSdk } from '../../lib/outpost.mjs';
import { childPids, cleanupOnce, rssOf, sleep, spawnDaemon, stopDaemon } from '../../lib/util.mjs';
import { alive, fdCount } from '../proc.mjs';

export { alive };

export const MiB = 1024 * 1024;

/** The unprivileged user a root run starts agents as (null when not root: we are unprivileged already). */
export function agentUser() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
  return { name: 'nobody', uid, gid };
}

/** Hands `path` (not recursively) to the agent's user; no-op when not root. */
export function chownTree(path) {
  const u = agentUser();
  if (u) chownSync(path, u.uid, u.gid);
}

/**
 * Starts one AES agent through bench/lib/agents.mjs with `unprivileged`: as
 * root it runs as `nobody` and AllowedRoots is its own directory. Returns
 * the agent with `root`: a fresh directory inside it, owned by the agent's
 * user, where this run's files go. `dir` is the run's temp dir itself
 * (ctx.tmp): agents.mjs opens it (0711) for the agent's user, not a
 * private directory below it.
 */
export async function startFaultAgent({ dir, secrets, topXml = '' }) {
  const agent = await agents.startAgent({
    dir,
    mode: 'aes',
    secrets,
    allowedRoots: [],
    unprivileged: true,
    topXml,
  });
  const root = join(agent.dir, 'work');
  mkdirSync(root, { recursive: true });
  chownTree(root);
  return { ...agent, root };
}

/** Connects an SDK client (the built SDK, dist/index.js) to an agent. */
export async function connectTo(agent, extra = {}) {
  const { AgentClient } = await loadSdk();
  return AgentClient.connect({ ...agent.connectOptions, ...extra });
}

/** The pid of the host that serves `client`'s session: the parent of a process it starts. */
export async function hostPidOf(client) {
  const r = await client.exec('/bin/sh', ['-c', 'echo $PPID'], { encoding: 'utf8' });
  const pid = Number(r.stdout.trim());
  const cmd = cmdline(pid);
  if (!cmd.includes('host/main.js')) throw new Error(`pid ${pid} is not a host process (${cmd})`);
  return pid;
}

export function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

function safeRead(f) {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

/** Host processes of an agent: its direct children (the shell that starts it execs node). */
export function hostPids(agentPid) {
  return childPids(agentPid).filter(alive);
}

/** { agentRss, agentFds, hostRss, hostFds, hosts } of an agent and its hosts, now. */
export function sampleAgent(agentPid) {
  const hosts = hostPids(agentPid);
  return {
    agentRss: rssOf(agentPid),
    agentFds: Math.max(0, fdCount(agentPid)),
    hostRss: hosts.reduce((a, p) => a + rssOf(p), 0),
    hostFds: hosts.reduce((a, p) => a + Math.max(0, fdCount(p)), 0),
    hosts: hosts.length,
  };
}

/**
 * Settles `promise` within `ms`: { ok: true, value } | { ok: false, error } |
 * { timedOut: true } — a request that is never answered becomes a figure, not a hung run.
 */
export async function settleWithin(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `test()` every `everyMs` until it is truthy or `ms` passes; returns its last value. */
export async function waitFor(test, ms, everyMs = 10) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await test();
    if (v || Date.now() >= deadline) return v;
    await sleep(everyMs);
  }
}

/** The error kind of an SDK error (RemoteError kind, else its code or name). */
export function kindOf(err) {
  return err?.kind ?? err?.code ?? err?.name ?? String(err);
}

/**
 * Pins a started agent's config to the port it got, so that a restart on the
 * same file listens where its clients expect it.
 */
export function pinPort(agent) {
  const text = readFileSync(agent.configFile, 'utf8');
  writeFileSync(agent.configFile, text.replace(/<Port>0<\/Port>/, `<Port>${agent.port}</Port>`));
}

/**
 * Starts the agent again on its own config file (after a kill -9), as the
 * same user, and waits for it to listen on its pinned port. Returns the new
 * { pid, stop }.
 */
export async function restartAgent(agent, timeoutMs = 30_000) {
  const logFile = join(agent.configFile, '..', 'agent-restart.log');
  const fd = openSync(logFile, 'a');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const user = agentUser();
  const asUser = user && agent.user === user.name ? { uid: user.uid, gid: user.gid } : {};
  const child = spawnDaemon(process.execPath, [agents.CLI, 'serve', '--config', agent.configFile], {
    stdio: ['ignore', fd, fd],
    env,
    cwd: join(agent.configFile, '..'),
    ...asUser,
  });
  closeSync(fd);
  const stop = cleanupOnce(() => stopDaemon(child, 6000, { wholeGroup: false }));
  const ok = await waitFor(
    () => safeRead(logFile).includes('"listening"') || child.exitCode !== null,
    timeoutMs,
    20,
  );
  if (!ok || child.exitCode !== null) {
    await stop();
    throw new Error(`the restarted agent did not listen: ${safeRead(logFile).slice(-1500)}`);
  }
  return { pid: child.pid, stop, logFile };
}

/** Least-squares slope of (t ms, v) points, per minute. */
export function slopePerMinute(points) {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const mv = points.reduce((a, p) => a + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60_000;
}

/** A row of the stress table; `met` null = skipped (the value says why). */
export function row(section, figure, value, goal, met) {
  return { section, figure, value: String(value), goal, met };
}
