/**
 * `outpost ping HOST [-c COUNT] [--interval MS]`: connects (handshake
 * included) and round-trips Ping COUNT times, printing each round trip in
 * milliseconds and a min/avg/max line.
 */
import type { Command } from 'commander';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connect,
  connectionSettings,
  endSession,
  parseTarget,
} from './connection.js';
import { clientAction, UsageError } from './errors.js';
import { interruptController } from './io.js';

interface PingFlags extends ConnectionFlags {
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
    .argument('<host>', 'HOST[:PORT] of the agent')
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

Output: "reply from HOST: time=0.42 ms" per ping, then "N replies: min/avg/max = … ms".
Exit code: 0 answered; 1 bad usage; 2 cannot connect (unreachable, wrong key, mode mismatch, timeout).`,
  );
  cmd.action(
    clientAction(async (host: string, flags: PingFlags) => {
      const n = count(flags.count, '--count', 1, 1_000_000, 1);
      const interval = count(flags.interval, '--interval', 0, 3_600_000, 1000);
      const settings = await connectionSettings(flags);
      const target = parseTarget(host);
      const stop = interruptController();
      try {
        const t0 = performance.now();
        const client = await connect(target, settings, stop.signal);
        const info = client.agentInfo;
        process.stdout.write(
          `connected to ${target.label} (agent ${info.product} ${client.agentVersion} on ${info.hostName}, mode ${settings.mode}) ` +
            `in ${ms(performance.now() - t0)} ms\n`,
        );
        const times: number[] = [];
        try {
          for (let i = 0; i < n && !stop.interrupted(); i++) {
            if (i > 0 && interval > 0)
              await new Promise<void>((r) => {
                const t = setTimeout(r, interval);
                stop.signal.addEventListener(
                  'abort',
                  () => {
                    clearTimeout(t);
                    r();
                  },
                  { once: true },
                );
              });
            if (stop.interrupted()) break;
            const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(settings.timeoutMs)]);
            const rtt = await client.ping({ signal });
            times.push(rtt);
            process.stdout.write(`reply from ${target.label}: time=${ms(rtt)} ms\n`);
          }
        } finally {
          await endSession(client);
        }
        if (times.length > 0) {
          const avg = times.reduce((a, b) => a + b, 0) / times.length;
          process.stdout.write(
            `${times.length} repl${times.length === 1 ? 'y' : 'ies'}: min/avg/max = ` +
              `${ms(Math.min(...times))}/${ms(avg)}/${ms(Math.max(...times))} ms\n`,
          );
        }
        return stop.interrupted() ? 130 : 0;
      } finally {
        stop.dispose();
      }
    }),
  );
}
