#!/usr/bin/env node
/**
 * Outbound mode at scale: 50 agents dial one `outpost hub`, then
 * `outpost exec --hosts FILE -- true` fans out across all of them by name
 * through the hub. Target: the fan-out's wall time under 2 s.
 *
 *   npm run build && node bench/outbound.mjs [--agents N] [--repeats N]
 *
 * The hub and every CLI run are real processes (dist/cli/main.js); the
 * agents run in this process (startAgent from dist, with the host router:
 * each session gets a real host process). The first fan-out is cold (every
 * agent starts a host); later ones find each agent's warm spare host.
 * The agents listen on loopback too, so the same fan-out dialed directly
 * (HOST:PORT) is measured interleaved as the baseline: the hub's cost is
 * the difference. Prints the figures and writes bench/results/outbound-<timestamp>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, '..', 'dist');
const CLI = join(DIST, 'cli', 'main.js');
const { parseConfig, renderConfigXml } = await import(join(DIST, 'agent', 'config.js'));
const { startAgent, silentLogger } = await import(join(DIST, 'agent', 'index.js'));
const { HostRouter } = await import(join(DIST, 'agent', 'host-router.js'));
const { hubInit } = await import(join(DIST, 'cli', 'hub.js'));
const { connectLocal, readJsonLine, writeJsonLine } = await import(join(DIST, 'transport', 'index.js'));

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('--agents', 50);
const REPEATS = arg('--repeats', 5);
const HOST = '127.0.0.1';

function freePort() {
  return new Promise((resolve) => {
    import('node:net').then(({ createServer }) => {
      const s = createServer();
      s.listen(0, HOST, () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
  });
}

function run(args, env) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NO_COLOR: '1', ...env } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

async function hubAgents(socket) {
  const s = await connectLocal(socket);
  writeJsonLine(s, { op: 'agents' });
  const r = await readJsonLine(s);
  s.destroy();
  return r;
}

const dir = await mkdtemp(join(os.tmpdir(), 'outpost-bench-outbound-'));
const agents = [];
let hub;
try {
  const hubDir = join(dir, 'hub');
  const socket = join(dir, 'run', 'hub.sock');
  const port = await freePort();
  const thumbprint = await hubInit({ dir: hubDir, host: [HOST] }, { out: () => {}, err: () => {} });
  const names = Array.from({ length: N }, (_, i) => `agent${String(i + 1).padStart(3, '0')}`);
  await writeFile(join(hubDir, 'agents'), names.map((n) => `${n} key-${n}\n`).join(''), { mode: 0o600 });
  hub = spawn(
    process.execPath,
    [CLI, 'hub', '--dir', hubDir, '--listen', `${HOST}:${port}`, '--socket', socket],
    {
      env: { ...process.env, HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  await new Promise((resolve, reject) => {
    let log = '';
    const t = setTimeout(() => reject(new Error(`hub did not start: ${log}`)), 20_000);
    hub.stderr.on('data', (d) => {
      log += d;
      if (log.includes('hub listening')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  const root = join(dir, 'root');
  const t0 = performance.now();
  for (const n of names) {
    const xml = renderConfigXml({
      // Also listening (loopback, mode none): the same agents dialed directly are the baseline.
      mode: 'none',
      address: HOST,
      port: 0,
      allowedRoots: [root],
      rootPaths: { BuildMaster: join(root, n) },
      servers: [{ host: `${HOST}:${port}`, key: `key-${n}`, thumbprint }],
    });
    const config = await parseConfig(xml, join(dir, `${n}.config`));
    const logger = silentLogger();
    agents.push(await startAgent(config, logger, { router: new HostRouter({ config, logger }) }));
  }
  for (;;) {
    const l = await hubAgents(socket);
    if (l.agents.length === N && l.agents.every((a) => a.version)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const arriveMs = performance.now() - t0;
  const hosts = join(dir, 'hosts.txt');
  await writeFile(hosts, `${names.join('\n')}\n`);
  const env = { OUTPOST_HUB: socket, HOME: dir };
  const cold = await run(['exec', '--hosts', hosts, '--', 'true'], env);
  if (cold.code !== 0) throw new Error(`fan-out failed:\n${cold.out}`);
  if (process.argv.includes('--verbose')) console.log(cold.out);
  const direct = join(dir, 'direct.txt');
  await writeFile(direct, `${agents.map((a) => `${HOST}:${a.port}`).join('\n')}\n`);
  const warm = [];
  const dialed = [];
  // Interleaved: through the hub, then the same agents dialed directly.
  // Warm: each agent's host of the last run is its spare again (a host that held nothing at
  // its session's end is recycled at once; docs/ARCHITECTURE.md, "Warm spare hosts").
  const settle = () => new Promise((r) => setTimeout(r, 2000));
  const hostProcesses = () => {
    let n = 0;
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
        const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
        if (ppid === process.pid && cmd.includes('host/main.js')) n++;
      } catch {}
    }
    return n;
  };
  const sparesBefore = [];
  for (let i = 0; i < REPEATS; i++) {
    await settle();
    sparesBefore.push(hostProcesses());
    const r = await run(['exec', '--hosts', hosts, '--', 'true'], env);
    if (r.code !== 0) throw new Error(`fan-out failed:\n${r.out}`);
    warm.push(r.ms);
    await settle();
    const d = await run(['exec', '--hosts', direct, '--', 'true'], env);
    if (d.code !== 0) throw new Error(`direct fan-out failed:\n${d.out}`);
    dialed.push(d.ms);
  }
  const baseline = [];
  for (let i = 0; i < 3; i++) baseline.push((await run(['--version'], env)).ms);
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const result = {
    agents: N,
    arriveMs: Math.round(arriveMs),
    coldFanoutMs: Math.round(cold.ms),
    warmFanoutMsMedian: Math.round(median(warm)),
    warmFanoutMs: warm.map(Math.round),
    directFanoutMsMedian: Math.round(median(dialed)),
    directFanoutMs: dialed.map(Math.round),
    cliStartupMsMedian: Math.round(median(baseline)),
    hostProcessesBeforeWarmRuns: sparesBefore,
    target: '< 2000 ms',
    met: median(warm) < 2000,
    cpus: os.cpus().length,
    load: os.loadavg().map((x) => Math.round(x * 10) / 10),
    node: process.version,
  };
  console.log(`| ${N} outbound agents on one hub | ms |`);
  console.log('|---|---|');
  console.log(`| all ${N} dialed in and probed | ${result.arriveMs} |`);
  console.log(`| exec --hosts (${N}) -- true, cold (every agent starts a host) | ${result.coldFanoutMs} |`);
  console.log(`| exec --hosts (${N}) -- true, warm, median of ${REPEATS} | ${result.warmFanoutMsMedian} |`);
  console.log(
    `| the same ${N} agents dialed directly (listening), median of ${REPEATS} | ${result.directFanoutMsMedian} |`,
  );
  console.log(`| outpost --version (CLI start-up alone) | ${result.cliStartupMsMedian} |`);
  console.log(`host processes up before each warm run: ${sparesBefore.join(', ')} (of ${N} agents)`);
  console.log(`target < 2000 ms: ${result.met ? 'met' : 'MISSED'} (load average ${result.load.join(', ')})`);
  mkdirSync(join(HERE, 'results'), { recursive: true });
  writeFileSync(
    join(HERE, 'results', `outbound-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
    `${JSON.stringify(result, null, 2)}\n`,
  );
} finally {
  await Promise.all(agents.map((a) => a.close().catch(() => {})));
  hub?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
}
