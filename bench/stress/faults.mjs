/**
 * `npm run stress` module: faults. Host `kill -9` during an upload, 64
 * writes in flight, a download and process output; a client SIGKILL'd
 * mid-output and resumed by a new one; disk full on a small tmpfs; agent
 * `kill -9` and restart on the same config. Each agent runs as the stress
 * suite starts them (unprivileged when root, AllowedRoots = its own
 * directory, 127.0.0.1 only); every wait is bounded.
 *
 *   import('./bench/stress/faults.mjs').then((m) => m.run({ quick, tmp, log }))
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { makeSecrets } from '../lib/agents.mjs';
import { startFaultAgent } from './lib/agent-faults.mjs';
import { diskFullRows } from './lib/disk-faults.mjs';
import { hostKillRows } from './lib/host-faults.mjs';
import { restartRows, resumeRows } from './lib/session-faults.mjs';

/**
 * Runs every fault scenario (--quick: one round each, smaller files).
 * Returns rows { section, figure, value, goal, met } (met null: skipped).
 */
export async function run(ctx) {
  mkdirSync(ctx.tmp, { recursive: true });
  const dir = mkdtempSync(join(ctx.tmp, 'faults-'));
  const secrets = await makeSecrets(dir);
  const rows = [];
  const agent = await startFaultAgent({ dir: ctx.tmp, secrets });
  ctx.log(`faults: agent pid ${agent.pid} as ${agent.user}, AllowedRoots ${agent.dir}`);
  try {
    rows.push(...(await hostKillRows(ctx, agent, dir)));
    rows.push(...(await resumeRows(ctx, agent, dir)));
    rows.push(...(await diskFullRows(ctx, agent, dir)));
  } finally {
    await agent.stop();
  }
  ctx.log('faults: agent kill -9 and restart');
  rows.push(...(await restartRows(ctx, secrets)));
  return rows;
}
