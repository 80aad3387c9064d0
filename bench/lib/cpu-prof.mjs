/**
 * Preloaded into the agents and their host processes (NODE_OPTIONS=--import)
 * by `run.mjs --profile`: node's --cpu-prof is not allowed in NODE_OPTIONS,
 * and the host processes are spawned without the agent's flags. Starts the
 * V8 CPU profiler and writes <dir>/<agent id>-<script>-<pid>.cpuprofile on exit
 * (open it in Chrome DevTools or summarise it with bench/lib/prof-summary.mjs).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { basename, join } from 'node:path';

const dir = process.env.BENCH_CPU_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.once('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (err || !res?.profile) return;
      const tag = process.env.BENCH_CPU_PROF_TAG ? `${process.env.BENCH_CPU_PROF_TAG}-` : '';
      const name = `${tag}${basename(process.argv[1] ?? 'node', '.js')}-${process.pid}.cpuprofile`;
      try {
        writeFileSync(join(dir, name), JSON.stringify(res.profile));
      } catch {
        // nowhere to report it
      }
    });
  });
}
