/**
 * `outpost cert [--out DIR] [--name N] [--host H…] [--days D] [--force]`:
 * makes a self-signed certificate and its private key for an agent in mode
 * ssl (made in-process, the same recipe as `outpost init --mode ssl`), writes
 * DIR/N.crt and DIR/N.key (mode 0600) atomically, and prints the
 * certificate's SHA-256 thumbprint on stdout (what clients pin with
 * --thumbprint). File names and what to do next go to stderr.
 */
import { mkdir, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { makeSelfSignedCertificate } from '../transport/index.js';
import { collect } from './connection.js';
import { UsageError } from './errors.js';
import { CERT_FILE_NAME, writeFileAtomic } from './init.js';

export interface CertOptions {
  out?: string | undefined;
  name?: string | undefined;
  host?: string[] | undefined;
  days?: string | undefined;
  force?: boolean | undefined;
}

export interface CertResult {
  certFile: string;
  keyFile: string;
  thumbprint: string;
}

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

export async function cert(options: CertOptions): Promise<CertResult> {
  const dir = resolve(options.out ?? '.');
  const name = options.name ?? CERT_FILE_NAME.replace(/\.crt$/, '');
  if (name === '' || /[/\\\0]/.test(name) || name === '.' || name === '..')
    throw new UsageError(`--name: "${name}" must be a file name without a directory (e.g. agent01)`);
  const days = options.days === undefined ? 3650 : Number(options.days);
  if (options.days !== undefined && (!/^\d+$/.test(options.days) || days < 1 || days > 36500))
    throw new UsageError(`--days: "${options.days}" must be a number of days from 1 to 36500`);
  const hosts = options.host?.length
    ? options.host
    : [hostname(), 'localhost', '127.0.0.1', '::1'].filter((h) => isIP(h) !== 0 || DNS_NAME.test(h));
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const h of hosts) {
    const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
    if (isIP(bare) !== 0) ipAddresses.push(bare);
    else if (DNS_NAME.test(bare)) dnsNames.push(bare);
    else throw new UsageError(`--host: "${h}" is not a host name or IP address`);
  }
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  for (const f of [certFile, keyFile])
    if (!options.force && (await exists(f)))
      throw new UsageError(
        `${f} already exists; pass --force to replace it, or choose another --name or --out`,
      );
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new UsageError(
      `--out: cannot create ${dir} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  const made = await makeSelfSignedCertificate({
    commonName: dnsNames[0] ?? ipAddresses[0] ?? 'outpost-agent',
    dnsNames,
    ipAddresses,
    days,
  });
  const thumbprint = made.thumbprint;
  await writeFileAtomic(keyFile, made.keyPem, { mode: 0o600, overwrite: options.force === true });
  await writeFileAtomic(certFile, made.certPem, { mode: 0o644, overwrite: options.force === true });
  return { certFile, keyFile, thumbprint };
}

export function registerCert(program: Command): void {
  program
    .command('cert')
    .description('make a self-signed TLS certificate and key for an agent; print its SHA-256 thumbprint')
    .option('--out <dir>', 'directory to write NAME.crt and NAME.key into (default: .)')
    .option('--name <name>', 'base name of the files (default: outpost-agent)')
    .option(
      '--host <host>',
      'a host name or IP address the certificate is for (repeatable; default: this host, localhost, 127.0.0.1, ::1)',
      collect,
    )
    .option('--days <days>', 'validity in days (default: 3650)')
    .option('--force', 'replace existing files')
    .addHelpText(
      'after',
      `
Examples:
  outpost cert --out /etc/outpost --host agent01.example.com --host 10.0.0.5
  outpost cert --name web01           # ./web01.crt, ./web01.key

Output: the thumbprint (AB:CD:…, 32 pairs) on stdout; file names on stderr. Put the files in the
agent's <Encryption Mode="ssl"><CertificateFile>…</CertificateFile><KeyFile>…</KeyFile>, then connect
with --thumbprint THUMBPRINT (or --ca NAME.crt).`,
    )
    .action(async (opts: CertOptions) => {
      const r = await cert(opts);
      process.stderr.write(
        `Wrote ${r.certFile} and ${r.keyFile} (keep the key private).\n` +
          'Clients pin the certificate with --thumbprint (SHA-256):\n',
      );
      process.stdout.write(`${r.thumbprint}\n`);
    });
}
