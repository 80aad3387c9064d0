/**
 * The client that the faults module kills mid-output: a separate Node
 * process, so that SIGKILL takes its socket down the way a crashed
 * orchestrator would. It connects with the SDK, starts `/bin/sh -c SCRIPT`,
 * prints `READY <sessionId> <token>` and appends every stdout chunk to
 * OUT_FILE synchronously — so what the file holds when it dies is exactly
 * what it had received.
 *
 *   FAULT_CHILD='{"connect":{...,"key":"hex"},"script":"...","outFile":"..."}' node child-faults.mjs
 */
import { appendFileSync } from 'node:fs';
import { loadSdk } from '../../lib/outpost.mjs';

const cfg = JSON.parse(process.env.FAULT_CHILD ?? '{}');
const { AgentClient } = await loadSdk();
const client = await AgentClient.connect(cfg.connect);
const proc = await client.spawn('/bin/sh', ['-c', cfg.script]);
proc.stdout.on('data', (chunk) => appendFileSync(cfg.outFile, chunk));
proc.stderr.resume();
process.stdout.write(`READY ${client.sessionId} ${proc.token}\n`);
// Bounded: the parent kills this process long before; if it does not, leave.
setTimeout(() => process.exit(3), 120_000).unref();
await proc.exited.catch(() => {});
process.stdout.write('EXITED\n');
