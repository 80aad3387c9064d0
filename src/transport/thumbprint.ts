/**
 * Certificate thumbprints: SHA-256 of the DER certificate, shown as
 * upper-case hex pairs separated by colons (like `openssl x509 -fingerprint
 * -sha256` and Node's `fingerprint256`). Comparison ignores colons, spaces
 * and case.
 */
import { createHash, X509Certificate } from 'node:crypto';

/** Strips separators and lower-cases; returns null unless 64 hex digits remain. */
export function normalizeThumbprint(text: string): string | null {
  const t = text.replace(/[\s:]/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(t) ? t : null;
}

/** `AB:CD:…` form of a normalized or raw thumbprint. */
export function formatThumbprint(hex: string): string {
  const t = hex.replace(/[\s:]/g, '').toUpperCase();
  return t.match(/../g)?.join(':') ?? t;
}

/** Thumbprint of a DER certificate. */
export function thumbprintOfDer(der: Uint8Array): string {
  return formatThumbprint(createHash('sha256').update(der).digest('hex'));
}

/** Thumbprint of the first certificate in a PEM text. */
export function thumbprintOfPem(pem: string | Buffer): string {
  return thumbprintOfDer(new X509Certificate(pem).raw);
}
