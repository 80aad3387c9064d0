/**
 * A private OpenSSH server for the comparisons: its own sshd_config, host key
 * and client key in the bench's temp dir, listening on 127.0.0.1 only, on a
 * free port. Installs Debian's openssh-server when /usr/sbin/sshd is missing.
 *
 * Remote commands run as `$SHELL -c cmd` (not a login shell). HOME is
 * overridden with SetEnv to an empty directory so Debian's bash (built with
 * SSH_SOURCE_BASHRC) finds no ~/.bashrc, and PermitUserRC/PermitUserEnvironment
 * are off, so no rc file inflates the timings.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupOnce, freePort, run, sh, sleep, spawnDaemon, stopDaemon } from './util.mjs';

export const SSHD = '/usr/sbin/sshd';

export async function ensureOpenSsh(log) {
  const need = [];
  if (!existsSync(SSHD)) need.push('openssh-server');
  for (const [bin, pkg] of [
    ['/usr/bin/ssh', 'openssh-client'],
    ['/usr/bin/scp', 'openssh-client'],
    ['/usr/bin/sftp', 'openssh-client'],
    ['/usr/bin/openssl', 'openssl'],
  ])
    if (!existsSync(bin) && !need.includes(pkg)) need.push(pkg);
  if (need.length === 0) return;
  log(`installing ${need.join(', ')} with apt-get…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await run('apt-get', ['update', '-qq'], { env, timeoutMs: 10 * 60_000 });
  // policy-rc.d keeps the package from starting a system-wide sshd on port 22.
  const policy = '/usr/sbin/policy-rc.d';
  const hadPolicy = existsSync(policy);
  if (!hadPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...need], {
      env,
      timeoutMs: 15 * 60_000,
    });
  } finally {
    if (!hadPolicy) await sh(`rm -f ${policy}`, { check: false });
  }
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is still missing after apt-get install`);
}

export async function versions() {
  const r = await run('ssh', ['-V'], { check: false });
  return (r.stderr || r.stdout).trim();
}

/**
 * Starts sshd. Returns { port, dir, base(cipher) → ssh args, target, sshArgs,
 * startMaster(), stop() }.
 */
export async function startSshd(dir, log) {
  const d = join(dir, 'ssh');
  mkdirSync(d, { recursive: true, mode: 0o700 });
  const home = join(d, 'home');
  mkdirSync(home, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation dir
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'host_ed25519')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'client_ed25519')]);
  await sh(`cp ${d}/client_ed25519.pub ${d}/authorized_keys && chmod 600 ${d}/authorized_keys`);
  const port = await freePort();
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${d}/host_ed25519`,
    `PidFile ${d}/sshd.pid`,
    `AuthorizedKeysFile ${d}/authorized_keys`,
    'PermitRootLogin yes', // loopback only, key only
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'PermitUserEnvironment no',
    'PermitUserRC no',
    `SetEnv HOME=${home} BASH_ENV= ENV=`,
    'PrintMotd no',
    'PrintLastLog no',
    'UseDNS no',
    'X11Forwarding no',
    'AllowTcpForwarding no',
    'MaxStartups 256:30:512',
    'MaxSessions 256',
    'ClientAliveInterval 0',
    'LogLevel ERROR',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
  const configFile = join(d, 'sshd_config');
  writeFileSync(configFile, config);
  await run(SSHD, ['-t', '-f', configFile]);
  const child = spawnDaemon(SSHD, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b) => {
    stderr += b;
    if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
  });
  const stop = cleanupOnce(() => stopDaemon(child, 3000));

  const sshArgs = (cipher) => [
    '-F',
    '/dev/null',
    '-i',
    `${d}/client_ed25519`,
    '-p',
    String(port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'Compression=no',
    '-o',
    'IdentitiesOnly=yes',
    ...(cipher ? ['-c', cipher] : []),
  ];
  // scp and sftp take -P for the port and no -p.
  const scpArgs = (cipher) => {
    const a = sshArgs(cipher);
    const i = a.indexOf('-p');
    a[i] = '-P';
    return a;
  };
  const target = 'root@127.0.0.1';

  // Wait until it accepts and runs a command (bounded).
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    const r = await run('ssh', [...sshArgs(), target, 'true'], { check: false, timeoutMs: 10_000 });
    ok = r.code === 0;
    if (!ok) {
      if (child.exitCode !== null) throw new Error(`sshd exited: ${stderr}`);
      await sleep(100);
    }
  }
  if (!ok) throw new Error(`sshd on port ${port} does not accept: ${stderr}`);
  log(`sshd listening on 127.0.0.1:${port}`);

  /** A ControlMaster connection; returns { args: ssh args using it, stop() }. */
  const startMaster = async (cipher) => {
    const sock = join(d, `cm-${Math.random().toString(36).slice(2, 8)}`);
    await run('ssh', [
      ...sshArgs(cipher),
      '-o',
      'ControlMaster=yes',
      '-o',
      `ControlPath=${sock}`,
      '-o',
      'ControlPersist=600',
      '-N',
      '-f',
      target,
    ]);
    const args = [...sshArgs(cipher), '-o', 'ControlMaster=no', '-o', `ControlPath=${sock}`];
    const stopMaster = cleanupOnce(() =>
      run('ssh', [...args, '-O', 'exit', target], { check: false, timeoutMs: 10_000 }),
    );
    return { args, stop: stopMaster };
  };

  return {
    port,
    dir: d,
    target,
    sshArgs,
    scpArgs,
    startMaster,
    stop,
    pid: child.pid,
    get stderr() {
      return stderr;
    },
  };
}
