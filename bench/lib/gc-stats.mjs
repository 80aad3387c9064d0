/**
 * Preload for the agents and hosts of a benchmark
 * (`BENCH_AGENT_NODE_OPTIONS=--import=./bench/lib/gc-stats.mjs`): counts the
 * garbage collections by kind and their total pause, and prints one line on
 * stderr (the agent's log) at exit: `gc-stats <script> <pid> kind=count/ms …`.
 */
import { basename } from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';

const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const stats = new Map();
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = KINDS[e.detail?.kind] ?? String(e.detail?.kind);
    const s = stats.get(kind) ?? { n: 0, ms: 0 };
    s.n++;
    s.ms += e.duration;
    stats.set(kind, s);
  }
});
obs.observe({ entryTypes: ['gc'] });
process.once('exit', () => {
  const parts = [...stats].map(([k, s]) => `${k}=${s.n}/${s.ms.toFixed(1)}ms`);
  process.stderr.write(`gc-stats ${basename(process.argv[1] ?? 'node')} ${process.pid} ${parts.join(' ')}\n`);
});
