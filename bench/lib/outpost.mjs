/**
 * The Outpost side of each comparison, through the built SDK (dist/index.js).
 * Kept in one place so the benchmarks read the same whatever the SDK's details.
 */
import { fileURLToPath } from 'node:url';

let sdk = null;

export async function loadSdk() {
  if (sdk) return sdk;
  const url = new URL('../../dist/index.js', import.meta.url);
  try {
    sdk = await import(url.href);
  } catch (err) {
    throw new Error(
      `cannot load the SDK from ${fileURLToPath(url)} (run \`npm run build\` first): ${err?.message ?? err}`,
    );
  }
  if (!sdk.AgentClient) throw new Error('dist/index.js does not export AgentClient');
  return sdk;
}

/** Connects to an agent started by agents.mjs. */
export async function connect(agent, extra = {}) {
  const { AgentClient } = await loadSdk();
  return AgentClient.connect({ ...agent.connectOptions, ...extra });
}

/**
 * The "cold" unit: connect (TCP + handshake + GetAgentInfo), run `fn(client)`,
 * and time exactly that; then end the session (CloseSession, so its host
 * process does not linger for the detached timeout) and close, untimed.
 * Returns { ms, value }.
 */
export async function cold(agent, fn) {
  const t0 = process.hrtime.bigint();
  const client = await connect(agent);
  let ms;
  let value;
  try {
    value = await fn(client);
    ms = Number(process.hrtime.bigint() - t0) / 1e6;
  } finally {
    await endSession(client);
  }
  return { ms, value };
}

/** CloseSession (ends the host process) and close; never throws. */
export async function endSession(client) {
  try {
    await client.closeSession();
  } catch {
    // the session may already be gone
  }
  await client.close().catch(() => {});
}

export async function upload(client, local, remote) {
  await client.upload(local, remote, { verify: false });
}

export async function download(client, remote, local) {
  await client.download(remote, local, { verify: false });
}

/** Runs `file args` to completion, discarding output; returns the exit code. */
export async function execTrue(client) {
  const r = await client.exec('/bin/true', []);
  if (r.code !== 0) throw new Error(`remote /bin/true exited with ${r.code}`);
}

/** Spawns a process and counts its stdout bytes (nothing is kept). */
export async function spawnCount(client, file, args) {
  const p = await client.spawn(file, args);
  let bytes = 0;
  p.stdout.on('data', (b) => {
    bytes += b.length;
  });
  p.stderr.resume();
  const ended = new Promise((resolve, reject) => {
    p.stdout.once('end', resolve);
    p.stdout.once('error', reject);
  });
  const exit = await p.exited;
  await ended;
  if (exit.code !== 0) throw new Error(`${file} exited with ${exit.code ?? exit.signal}`);
  return bytes;
}

/** Uploads a local directory tree to `remote` with `concurrency` files in flight. */
export async function uploadDir(client, localDir, remoteDir, concurrency = 64) {
  const r = await client.upload(localDir, remoteDir, { concurrency, verify: false });
  return r.files;
}
