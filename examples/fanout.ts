/**
 * Run one command on many agents at once and report each one's result.
 *
 *   OUTPOST_AGENTS=10.0.0.5:46336,10.0.0.6:46336 OUTPOST_KEY=… node --import tsx examples/fanout.ts uptime
 */
import { AgentClient } from '../src/index.js';

const agents = (process.env.OUTPOST_AGENTS ?? '127.0.0.1:46336').split(',');
const [command = 'uname', ...args] = process.argv.slice(2);

const results = await Promise.allSettled(
  agents.map(async (address) => {
    const [host = '', port = '46336'] = address.split(':');
    const agent = await AgentClient.connect({
      host,
      port: Number(port),
      key: process.env.OUTPOST_KEY,
      timeoutMs: 5000,
    });
    try {
      return await agent.exec(command, args, { encoding: 'utf8', signal: AbortSignal.timeout(60_000) });
    } finally {
      await agent.close();
    }
  }),
);

results.forEach((r, i) => {
  const name = agents[i];
  if (r.status === 'rejected')
    console.log(`${name}: FAILED ${r.reason instanceof Error ? r.reason.message : r.reason}`);
  else console.log(`${name}: exit ${r.value.code}: ${r.value.stdout.trim()}`);
});
process.exitCode = results.some((r) => r.status === 'rejected' || r.value.code !== 0) ? 1 : 0;
