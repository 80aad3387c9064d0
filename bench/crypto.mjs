#!/usr/bin/env node
/**
 * Single-core cipher throughput in this Node (OpenSSL), one 1 MiB update at a
 * time, from CPU time (robust to the machine's load; MB/s is per busy core): what AES-256-CBC (the protocol's AES mode) costs against the ciphers
 * OpenSSH and TLS use. See docs/BENCHMARKS.md, "What limits each missed target".
 *
 *   node bench/crypto.mjs [--mib N]
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '512' } } });
const mib = Number(values.mib);
const buf = randomBytes(1 << 20);
const key = randomBytes(32);
const iv = randomBytes(16);

const ciphers = [
  ['aes-256-cbc', 32, 16, 'the protocol\u2019s AES mode (serial when encrypting)'],
  ['aes-256-ctr', 32, 16, 'ssh aes256-ctr (without its MAC)'],
  ['aes-128-gcm', 16, 12, 'ssh aes128-gcm@openssh.com, TLS_AES_128_GCM_SHA256'],
  ['aes-256-gcm', 32, 12, 'TLS_AES_256_GCM_SHA384'],
  ['chacha20-poly1305', 32, 12, 'ssh chacha20-poly1305@openssh.com'],
];

console.log('| cipher | encrypt MB/s | decrypt MB/s | encrypt ms/MiB | decrypt ms/MiB | used by |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const [alg, keyLen, ivLen, note] of ciphers) {
  const opts = alg.startsWith('chacha') ? { authTagLength: 16 } : undefined;
  const k = key.subarray(0, keyLen);
  const v = iv.subarray(0, ivLen);
  // CPU time of this thread (user + system), not wall time: on a shared machine the wall
  // clock also counts the time other processes had the core.
  const time = (c) => {
    for (let i = 0; i < 16; i++) c.update(buf); // warm up
    const c0 = process.cpuUsage();
    for (let i = 0; i < mib; i++) c.update(buf);
    const d = process.cpuUsage(c0);
    return (d.user + d.system) / 1000 / mib;
  };
  const enc = time(createCipheriv(alg, k, v, opts));
  const dec = time(createDecipheriv(alg, k, v, opts));
  const mbps = (ms) => ((1.048576 / ms) * 1000).toFixed(0);
  console.log(`| ${alg} | ${mbps(enc)} | ${mbps(dec)} | ${enc.toFixed(2)} | ${dec.toFixed(2)} | ${note} |`);
}
