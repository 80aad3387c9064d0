/** Raw loopback TCP in Node, the baseline for mode none: file → socket → other process → file. */
import { createReadStream, createWriteStream } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { cleanupOnce, sleep, spawnDaemon, stopDaemon } from './util.mjs';

const PEER = join(dirname(fileURLToPath(import.meta.url)), 'tcp-peer.mjs');

export async function startTcpPeer() {
  const child = spawnDaemon(process.execPath, [PEER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const stop = cleanupOnce(() => stopDaemon(child, 2000));
  let out = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  for (let i = 0; i < 500 && !out.includes('\n'); i++) await sleep(10);
  const port = Number(out.trim());
  if (!port) {
    await stop();
    throw new Error('tcp peer did not start');
  }
  return { pid: child.pid, port, stop };
}

function open(port) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends `src` to the peer, which writes it to `dst`; resolves once it is written. */
export async function tcpPut(port, src, dst) {
  const s = await open(port);
  s.write(`${JSON.stringify({ op: 'put', path: dst })}\n`);
  const ack = new Promise((resolve, reject) => {
    let got = '';
    s.on('data', (d) => {
      got += d;
    });
    s.once('close', () => (got === 'ok' ? resolve() : reject(new Error(`tcp put: ${got}`))));
    s.once('error', reject);
  });
  const rs = createReadStream(src, { highWaterMark: 256 * 1024 });
  rs.once('error', (err) => s.destroy(err));
  rs.pipe(s); // ends (half-closes) the socket after the last byte; the ack still arrives
  await ack;
}

/** Fetches `src` from the peer into `dst`. */
export async function tcpGet(port, src, dst) {
  const s = await open(port);
  s.write(`${JSON.stringify({ op: 'get', path: src })}\n`);
  await pipeline(s, createWriteStream(dst));
}
