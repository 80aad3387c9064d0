/**
 * Outpost agents for the benchmarks: `node dist/cli/main.js serve --config F`
 * with a config written into the bench's temp dir (Port 0, 127.0.0.1 only,
 * AllowedRoots = the temp dir), in mode none, ssl (a certificate made with
 * openssl) or aes (AES-256).
 *
 * `unprivileged: true` (the stress suite): when this process is root, the
 * agent runs as `nobody`, owns only its own directory, and AllowedRoots is
 * that directory — generated requests may name any path, and a generated
 * DeleteDirectory("/") must find nothing it may touch.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupOnce, run, sleep, spawnDaemon, stopDaemon } from './util.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

let seq = 0;

/** Key material shared by all agents of a run: { aesKey, aesKeyHex, certFile, keyFile, certPem, thumbprint }. */
export async function makeSecrets(dir) {
  const d = join(dir, 'secrets');
  mkdirSync(d, { recursive: true });
  const certFile = join(d, 'agent-cert.pem');
  const keyFile = join(d, 'agent-key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
  ]);
  const certPem = readFileSync(certFile, 'utf8');
  const thumbprint = new X509Certificate(certPem).fingerprint256.replaceAll(':', '');
  const aesKey = randomBytes(32);
  return { aesKey, aesKeyHex: aesKey.toString('hex'), certFile, keyFile, certPem, thumbprint };
}

function configXml({ mode, secrets, allowedRoots, stateDir, extra = '', top = '', maxHandshakes = 1000 }) {
  const enc =
    mode === 'aes'
      ? `<Key>${secrets.aesKeyHex}</Key>`
      : mode === 'ssl'
        ? `<CertificateFile>${secrets.certFile}</CertificateFile><KeyFile>${secrets.keyFile}</KeyFile>`
        : '';
  return `<?xml version="1.0" encoding="utf-8"?>
<InedoAgentConfig>
  <ExtensionCachePath>${join(stateDir, 'ExtensionCache')}</ExtensionCachePath>
  <BuildMasterRootPath>${join(stateDir, 'BuildMaster')}</BuildMasterRootPath>
  <OtterRootPath>${join(stateDir, 'Otter')}</OtterRootPath>
  <HedgehogRootPath>${join(stateDir, 'Hedgehog')}</HedgehogRootPath>
  <AllowedRoots>${allowedRoots.join(';')}</AllowedRoots>
  <MaxOpenFilesPerSession>100000</MaxOpenFilesPerSession>
  ${top}
  <Listener Enabled="true">
    <Encryption Mode="${mode}">${enc}</Encryption>
    <Address>127.0.0.1</Address>
    <Port>0</Port>
    ${maxHandshakes === null ? '' : `<MaxConcurrentHandshakes>${maxHandshakes}</MaxConcurrentHandshakes>`}
    <AllowedAddresses>127.0.0.1;::1</AllowedAddresses>
    ${extra}
  </Listener>
</InedoAgentConfig>
`;
}

/** uid and gid of `nobody` (from the passwd database), or null when there is none. */
async function nobodyIds() {
  const r = await run('getent', ['passwd', 'nobody'], { check: false });
  const f = r.stdout.trim().split(':');
  if (r.code !== 0 || f.length < 4) return null;
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/**
 * Starts one agent. Returns { id, pid, port, mode, dir, user, connectOptions, logFile, configFile, stop() };
 * `dir` is its temp dir (the AllowedRoot when unprivileged).
 * `profileDir`: profile it and its host processes (lib/cpu-prof.mjs), profiles written there on exit.
 * `unprivileged`: AllowedRoots = its own temp dir (`dir` of the result); as root, run it as `nobody`,
 * owning that dir only.
 * `maxHandshakes`: MaxConcurrentHandshakes (null: the agent's default); `listenerXml`/`topXml`: more config.
 */
export async function startAgent({
  dir,
  mode,
  secrets,
  allowedRoots,
  profileDir,
  readyTimeoutMs = 30_000,
  unprivileged = false,
  maxHandshakes = 1000,
  listenerXml = '',
  topXml = '',
}) {
  const id = `agent-${mode}-${++seq}`;
  const d = join(dir, 'agents', id);
  mkdirSync(d, { recursive: true });
  let ids = null;
  let agentSecrets = secrets;
  // Unprivileged: the agent's files (config, log, key) stay root's in `d`; its
  // temp dir `work` is the only thing it owns and the only AllowedRoot, so a
  // generated request can touch nothing else, not even its own log.
  const work = unprivileged ? join(d, 'work') : d;
  if (unprivileged) mkdirSync(work, { recursive: true });
  if (unprivileged && process.getuid?.() === 0) {
    ids = await nobodyIds();
    if (!ids) throw new Error('running as root but there is no user "nobody" to run the agent as');
    // nobody may pass through the run's temp dir (not list it).
    chmodSync(dir, 0o711);
    chmodSync(join(dir, 'agents'), 0o711);
    if (mode === 'ssl') {
      const certFile = join(d, 'agent-cert.pem');
      const keyFile = join(d, 'agent-key.pem');
      copyFileSync(secrets.certFile, certFile);
      copyFileSync(secrets.keyFile, keyFile);
      chownSync(keyFile, ids.uid, ids.gid);
      agentSecrets = { ...secrets, certFile, keyFile };
    }
  }
  const roots = unprivileged ? [work] : allowedRoots;
  const configFile = join(d, 'InedoAgent.config');
  await writeFile(
    configFile,
    configXml({
      mode,
      secrets: agentSecrets,
      allowedRoots: roots,
      stateDir: join(work, 'state'),
      extra: listenerXml,
      top: topXml,
      maxHandshakes,
    }),
  );
  if (ids) {
    await run('chown', ['-R', `${ids.uid}:${ids.gid}`, work]);
    // The config holds the key: readable by the agent's group, not by everyone.
    chownSync(configFile, 0, ids.gid);
    chmodSync(configFile, 0o640);
  }
  const logFile = join(d, 'agent.log');
  const fd = openSync(logFile, 'a');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  // BENCH_AGENT_NODE_OPTIONS: node flags for the agents and their hosts only (e.g. --trace-gc).
  if (process.env.BENCH_AGENT_NODE_OPTIONS) env.NODE_OPTIONS = process.env.BENCH_AGENT_NODE_OPTIONS;
  if (profileDir) {
    mkdirSync(profileDir, { recursive: true });
    env.NODE_OPTIONS =
      `${env.NODE_OPTIONS ?? ''} --import=${new URL('./cpu-prof.mjs', import.meta.url).href}`.trim();
    env.BENCH_CPU_PROF_DIR = profileDir;
    env.BENCH_CPU_PROF_TAG = id;
  }
  // A high descriptor limit for the 1,000-connection test (root may raise the hard limit).
  const child = spawnDaemon(
    '/bin/sh',
    [
      '-c',
      'ulimit -n 65536 2>/dev/null || true; exec "$0" "$@"',
      process.execPath,
      CLI,
      'serve',
      '--config',
      configFile,
    ],
    { stdio: ['ignore', fd, fd], env, cwd: d, ...(ids ? { uid: ids.uid, gid: ids.gid } : {}) },
  );
  closeSync(fd);
  const stop = cleanupOnce(() => stopDaemon(child, 6000, { wholeGroup: false }));
  const port = await waitListening(child, logFile, readyTimeoutMs).catch(async (err) => {
    await stop();
    throw err;
  });
  const connectOptions = { host: '127.0.0.1', port, mode, timeoutMs: 30_000 };
  if (mode === 'aes') connectOptions.key = secrets.aesKey;
  if (mode === 'ssl') connectOptions.thumbprint = secrets.thumbprint;
  // The shell execs node, so child.pid is the agent itself.
  const user = ids ? 'nobody' : (process.env.USER ?? String(process.getuid?.() ?? ''));
  return { id, pid: child.pid, port, mode, dir: work, user, connectOptions, logFile, configFile, stop };
}

async function waitListening(child, logFile, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`agent exited (${child.exitCode ?? child.signalCode}): ${tail(logFile)}`);
    if (existsSync(logFile)) {
      const text = readFileSync(logFile, 'utf8');
      for (const line of text.split('\n')) {
        if (!line.includes('"listening"')) continue;
        try {
          const j = JSON.parse(line);
          if (j.msg === 'listening' && j.port) return j.port;
        } catch {
          // partial line
        }
      }
    }
    await sleep(20);
  }
  throw new Error(`agent did not report listening within ${timeoutMs} ms: ${tail(logFile)}`);
}

function tail(file) {
  try {
    return readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '(no log)';
  }
}
