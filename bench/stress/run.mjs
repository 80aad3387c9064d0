#!/usr/bin/env node
/**
 * `npm run stress`: the reliability figures of docs/RELIABILITY.md.
 *
 *   npm run build && node bench/stress/run.mjs [--quick] [--only fuzz,live,floods,faults,soak] [--seed N] [--keep]
 *
 * Each section is a module exporting `async function run(ctx)` that returns
 * rows `{ section, figure, value, goal, met }`; ctx is { quick, tmp, log,
 * seed, details }. Sections run one after another; their rows make ONE
 * table, printed and written to bench/results/stress-<timestamp>.{md,json}.
 * faults and soak are separate modules (faults.mjs, soak.mjs), loaded when
 * present. Agents the sections start run as `nobody` when this runs as root,
 * on 127.0.0.0/8 only; every loop is bounded, and everything started is
 * stopped, the temp dir removed, however the run ends.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { installSignalHandlers, makeTempDir, runCleanups } from '../lib/util.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SECTIONS = ['fuzz', 'live', 'floods', 'faults', 'soak'];

const HELP = `usage: node bench/stress/run.mjs [options]

  --quick          small counts (a smoke run of every section)
  --only LIST      sections to run, comma-separated: ${SECTIONS.join(', ')} (default: all)
  --seed N         seed of the generated inputs (default: random, printed)
  --keep           keep the temp dir (its path is printed)
  --help
`;

function parseOptions(argv) {
  const o = { quick: false, only: [], seed: undefined, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--only')
      o.only.push(
        ...String(argv[++i] ?? '')
          .split(',')
          .filter(Boolean),
      );
    else if (a === '--seed') o.seed = Number(argv[++i]);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(HELP);
      process.exit(0);
    } else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  for (const s of o.only)
    if (!SECTIONS.includes(s)) throw new Error(`unknown section "${s}": expected ${SECTIONS.join(', ')}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new Error('--seed takes an integer');
  return o;
}

function cell(v) {
  if (typeof v === 'number')
    return Number.isInteger(v) ? v.toLocaleString('en-US') : String(Number(v.toPrecision(3)));
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v ?? '–').replaceAll('|', '\\|');
}

/** The one table: section | figure | value | goal | met. */
export function formatTable(rows) {
  const lines = ['| section | figure | value | goal | met |', '|---|---|---|---|---|'];
  for (const r of rows)
    lines.push(
      `| ${cell(r.section)} | ${cell(r.figure)} | ${cell(r.value)} | ${cell(r.goal)} | ${r.met === null ? 'skipped' : r.met ? 'yes' : '**no**'} |`,
    );
  return lines.join('\n');
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    user: os.userInfo().username,
  };
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  installSignalHandlers();
  const seed = o.seed ?? (Math.random() * 2 ** 31) | 0;
  const tmp = makeTempDir('outpost-stress-', { keep: o.keep });
  if (o.keep) process.stderr.write(`temp dir: ${tmp}\n`);
  const t0 = Date.now();
  const log = (line) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}\n`);
  const details = {};
  const ctx = { quick: o.quick, tmp, log, seed, details };
  const wanted = o.only.length > 0 ? o.only : SECTIONS;
  const rows = [];
  log(`stress run: sections ${wanted.join(', ')}${o.quick ? ' (quick)' : ''}, seed ${seed}`);
  for (const name of wanted) {
    const file = join(HERE, `${name}.mjs`);
    if (!existsSync(file)) {
      rows.push({ section: name, figure: 'section', value: 'not present', goal: `${name}.mjs`, met: null });
      continue;
    }
    const mod = await import(pathToFileURL(file).href);
    const s0 = Date.now();
    try {
      const got = await mod.run(ctx);
      rows.push(...got);
    } catch (err) {
      log(`${name}: FAILED: ${err?.stack ?? err}`);
      rows.push({
        section: name,
        figure: 'section ran',
        value: `failed: ${String(err?.message ?? err).slice(0, 120)}`,
        goal: 'ran',
        met: false,
      });
    }
    log(`${name}: done in ${((Date.now() - s0) / 1000).toFixed(0)} s`);
  }
  const table = formatTable(rows);
  const command = `node bench/stress/run.mjs ${process.argv.slice(2).join(' ')}`.trim();
  const info = {
    command,
    seed,
    machine: machine(),
    seconds: (Date.now() - t0) / 1000,
    started: new Date(t0).toISOString(),
  };
  process.stdout.write(
    `\n${table}\n\n${command} · seed ${seed} · ${info.machine.cpu} · ${info.machine.node} · ${Math.round(info.seconds)} s\n`,
  );
  const dir = join(HERE, '..', 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = new Date(t0).toISOString().replace(/[:.]/g, '-');
  writeFileSync(
    join(dir, `stress-${stamp}.json`),
    `${JSON.stringify({ ...info, rows, details }, null, 2)}\n`,
  );
  writeFileSync(
    join(dir, `stress-${stamp}.md`),
    `${table}\n\n\`${command}\` (seed ${seed}) on ${info.machine.cpu}, ${info.machine.memory}, ${info.machine.os}, Node ${info.machine.node}, as ${info.machine.user}; ${Math.round(info.seconds)} s\n`,
  );
  log(`results: bench/results/stress-${stamp}.json`);
  const failed = rows.some((r) => r.met === false);
  process.exitCode = failed ? 1 : 0;
}

main()
  .catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exitCode = 2;
  })
  .finally(() => runCleanups());
