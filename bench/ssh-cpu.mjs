#!/usr/bin/env node
/**
 * CPU per MiB of OpenSSH moving the bytes bench/cpu.mjs moves for Outpost,
 * so the two can be compared on a shared machine (CPU time barely depends on
 * the load; wall time does). A private sshd (lib/sshd.mjs); per cipher, an
 * upload (`ssh cat > file`), a download (`ssh cat file`) and process output
 * (`ssh head -c N /dev/zero`), stdout to /dev/null. The client column is the
 * ssh process (its rusage, read by the shell that ran it); the server column
 * is sshd with every session process it forked and reaped (cat and head
 * included), from the listener's /proc stat.
 *
 *   node bench/ssh-cpu.mjs [--size MIB] [--ciphers aes256-ctr,aes128-gcm@openssh.com]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startSshd } from './lib/sshd.mjs';
import { installSignalHandlers, makeTempDir, runCleanups, sh, sleep } from './lib/util.mjs';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    ciphers: { type: 'string', default: 'aes256-ctr,aes128-gcm@openssh.com' },
  },
});
const mib = Number(values.size);
const TICK_MS = 10; // USER_HZ = 100 on Linux

/** CPU ms of a process, with its reaped children (cutime + cstime). */
function cpuWithChildren(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS;
}

const q = (a) => `'${a.replaceAll("'", "'\\''")}'`;

installSignalHandlers();
try {
  const dir = await makeTempDir('outpost-ssh-cpu-');
  const sshd = await startSshd(dir, (m) => process.stderr.write(`${m}\n`));
  const src = join(dir, 'src.bin');
  await sh(`head -c ${mib * 1048576} /dev/urandom > ${q(src)}`);
  console.log('| work | wall | ssh | sshd + session | total | unit |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const cipher of values.ciphers.split(',')) {
    const works = [
      ['upload', `cat > ${q(join(dir, 'dst.bin'))}`, `< ${q(src)} > /dev/null`],
      ['download', `cat ${q(src)}`, '> /dev/null'],
      ['process output', `head -c ${mib * 1048576} /dev/zero`, '> /dev/null'],
    ];
    for (const [name, remote, redirect] of works) {
      const s0 = cpuWithChildren(sshd.pid);
      const t0 = performance.now();
      // The shell reports its children's CPU (the ssh process) after ssh exits.
      const cmd = `ssh ${sshd.sshArgs(cipher).map(q).join(' ')} ${sshd.target} ${q(remote)} ${redirect}; cat /proc/$$/stat`;
      const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
      const wall = performance.now() - t0;
      if (r.status !== 0) throw new Error(`ssh ${cipher} ${name} failed: ${r.stderr}`);
      const stat = r.stdout.trim().split('\n').pop();
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const client = (Number(f[13]) + Number(f[14])) * TICK_MS;
      await sleep(300); // the session processes are reaped
      const server = cpuWithChildren(sshd.pid) - s0;
      const per = (v) => (v / mib).toFixed(2);
      console.log(
        `| ssh ${cipher} ${name} ${mib} MiB | ${wall.toFixed(0)} ms | ${per(client)} | ${per(server)} | ${per(client + server)} | ms/MiB |`,
      );
    }
  }
  await sshd.stop();
} finally {
  await runCleanups();
}
