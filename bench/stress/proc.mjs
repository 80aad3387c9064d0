/**
 * What /proc says about an agent: its open descriptors, its host processes
 * (its direct children) and the agent's log, for the stress sections.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { childPids, sleep } from '../lib/util.mjs';

/** Open file descriptors of a process (-1 when it is gone). */
export function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

/** True while the process exists and is not a zombie. */
export function alive(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Live direct children of a process (an agent's host processes). */
function hostPids(pid) {
  return childPids(pid).filter(alive);
}

/** { fds, hosts } of an agent now. */
export function agentCounts(pid) {
  return { fds: fdCount(pid), hosts: hostPids(pid).length };
}

/**
 * Waits (at most `timeoutMs`) until the agent's FDs and host processes are
 * back to `baseline` or below; returns the last counts and the wait.
 */
export async function settle(pid, baseline, timeoutMs = 60_000) {
  const t0 = Date.now();
  let now = agentCounts(pid);
  while (Date.now() - t0 < timeoutMs) {
    if (now.fds <= baseline.fds && now.hosts <= baseline.hosts) break;
    await sleep(250);
    now = agentCounts(pid);
  }
  return { ...now, waitedMs: Date.now() - t0 };
}

/** The agent's JSON log lines (pino), parsed; unparsable lines skipped. */
export function logLines(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // a partial last line
    }
  }
  return out;
}

/**
 * How many log events of `kind` (RateLimitedLog kinds) the lines show,
 * counting the "N more were suppressed" lines too.
 */
export function countKind(lines, kind) {
  let n = 0;
  for (const l of lines) if (l.kind === kind) n += l.suppressed ?? 1;
  return n;
}
