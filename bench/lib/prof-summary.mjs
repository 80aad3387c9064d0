#!/usr/bin/env node
/**
 * Summarises .cpuprofile files (from `run.mjs --profile`): total sampled time
 * and the functions with the most self time.
 *
 *   node bench/lib/prof-summary.mjs [--top N] FILE|DIR …
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

const args = process.argv.slice(2);
let top = 25;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else if (statSync(args[i]).isDirectory()) {
    for (const f of readdirSync(args[i]).sort()) if (f.endsWith('.cpuprofile')) files.push(join(args[i], f));
  } else files.push(args[i]);
}

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = p.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const d = (dt[i + 1] ?? dt[i] ?? 0) / 1000; // ms attributed to sample i
    const n = byId.get(p.samples[i]);
    const cf = n.callFrame;
    const where = cf.url
      ? `${cf.url.replace(/^file:\/\/.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`
      : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + d);
    total += d;
  }
  const idle = self.get('(idle)') ?? 0;
  console.log(`\n== ${basename(file)}: ${total.toFixed(0)} ms sampled, ${(total - idle).toFixed(0)} ms busy`);
  const rows = [...self.entries()]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, top);
  for (const [k, v] of rows)
    console.log(
      `${v.toFixed(1).padStart(9)} ms ${((100 * v) / Math.max(1, total - idle)).toFixed(1).padStart(5)}%  ${k}`,
    );
}
