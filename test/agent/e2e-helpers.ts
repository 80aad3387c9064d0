/** Shared bits of the agent's end-to-end tests (real `outpost serve`, real hosts). */
import { execFileSync } from 'node:child_process';
import { decodeEventBody, decodeResult, encodeProductRequest, type Reply } from '../../src/protocol/index.js';
import type { TestClient } from '../helpers/agent.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(pred: () => boolean, ms = 10000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Direct children of `pid` (host processes of the agent). */
export function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** The parent of `pid` (the host of a process it started). */
export function parentOf(pid: number): number {
  return Number(execFileSync('ps', ['-o', 'ppid=', '-p', String(pid)], { encoding: 'utf8' }).trim());
}

export function stdoutText(events: Reply[] | undefined): string {
  return (events ?? [])
    .filter((e) => e.kind === 'event' && e.event === 1)
    .map((e) => (e.kind === 'event' ? Buffer.from(decodeEventBody('Stdout', e.body).data).toString() : ''))
    .join('');
}

export function exitedOf(events: Reply[] | undefined) {
  const last = events?.at(-1);
  if (last?.kind === 'event' && last.event === 3) return decodeEventBody('Exited', last.body);
  return null;
}

/** StartProcess on `token`; resolves with the reply (Response: the OS pid in `pid`). */
export async function startProcess(
  c: TestClient,
  agentType: number,
  token: number,
  fileName: string,
  args: string[],
  workingDirectory: string | null = null,
): Promise<{ reply: Reply; pid: number }> {
  const reply = await c.sendRaw(
    encodeProductRequest(agentType, 'StartProcess', token, {
      fileName,
      args,
      workingDirectory,
      environment: {},
      flags: 0,
    }),
    token,
    // The first request of a session may wait for a host to boot on a loaded machine.
    20_000,
  );
  const pid = reply.kind === 'response' ? decodeResult('StartProcess', reply.body).osProcessId : 0;
  return { reply, pid };
}
