/**
 * `outpost ping HOST [-c COUNT] [--interval MS]`: connects (handshake
 * included) and round-trips Ping COUNT times, printing each round trip in
 * milliseconds and a min/avg/max line.
 */
import type { Command } from 'commander';
import { addConnectionOptions } from './connection.js';
import { clientAction, EXIT, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';

interface PingFlags extends TargetFlags {
  count?: string;
  interval?: string;
}

function count(text: string | undefined, what: string, min: number, max: number, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max)
    throw new UsageError(`${what}: "${text}" must be a whole number from ${min} to ${max}`);
  return n;
}

const ms = (v: number) => v.toFixed(2);

export function registerPing(program: Command): void {
  const cmd = program
    .command('ping')
    .description('check that an agent answers; print the round-trip time in milliseconds')
    .argument('<host>', 'HOST[:PORT], alias or @group of the agent(s)')
    .option('-c, --count <n>', 'number of pings (default: 1)')
    .option('--interval <ms>', 'pause between pings in milliseconds (default: 1000)');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost ping 10.0.0.5
  outpost ping web01:46400 -c 5 --interval 200
  outpost ping [::1] --mode ssl --thumbprint AB:CD:…
  outpost ping @web                            # every host of the group; a summary table

Output: "reply from HOST: time=0.42 ms" per ping, then "N replies: min/avg/max = … ms".
Exit code: 0 answered; 1 bad usage; 2 cannot connect (unreachable, wrong key, mode mismatch, timeout).`,
  );
  cmd.action(
    clientAction(async (host: string, flags: PingFlags) => {
      const n = count(flags.count, '--count', 1, 1_000_000, 1);
      const interval = count(flags.interval, '--interval', 0, 3_600_000, 1000);
      const t0 = performance.now();
      return runOnHosts({
        names: [host],
        flags,
        command: 'ping',
        run: async (client, task) => {
          const info = client.agentInfo;
          const connectMs = performance.now() - t0;
          await task.print(
            `connected to ${task.label} (agent ${info.product} ${client.agentVersion} on ${info.hostName}, mode ${task.settings.mode}) ` +
              `in ${ms(connectMs)} ms\n`,
          );
          const times: number[] = [];
          for (let i = 0; i < n && !task.signal.aborted; i++) {
            if (i > 0 && interval > 0) await sleep(interval, task.signal);
            if (task.signal.aborted) break;
            const signal = AbortSignal.any([task.signal, AbortSignal.timeout(task.settings.timeoutMs)]);
            const rtt = await client.ping({ signal });
            times.push(rtt);
            await task.print(`reply from ${task.label}: time=${ms(rtt)} ms\n`);
          }
          const avg = times.length ? times.reduce((a, b) => a + b, 0) / times.length : 0;
          const stats = times.length
            ? `${ms(Math.min(...times))}/${ms(avg)}/${ms(Math.max(...times))} ms`
            : 'no replies';
          if (times.length > 0)
            await task.print(
              `${times.length} repl${times.length === 1 ? 'y' : 'ies'}: min/avg/max = ${stats}\n`,
            );
          return {
            ok: true,
            result: `${times.length} repl${times.length === 1 ? 'y' : 'ies'}, avg ${ms(avg)} ms`,
            exitCode: task.signal.aborted ? EXIT.INTERRUPTED : EXIT.OK,
            json: {
              host: task.label,
              connectMs: Number(ms(connectMs)),
              replies: times.length,
              timesMs: times.map((t) => Number(ms(t))),
              mode: task.settings.mode,
              version: client.agentVersion,
            },
          };
        },
      });
    }),
  );
}

function sleep(msToWait: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((r) => {
    const t = setTimeout(done, msToWait);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      r();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
