/**
 * Self-signed certificates made in-process (no `openssl` binary), with
 * @peculiar/x509 over Node's WebCrypto: the one recipe behind
 * `outpost init --mode ssl`, `outpost cert` and the tests' certificates.
 *
 * The certificate matches what `openssl req -x509` made before: EC P-256
 * (or RSA 2048), ECDSA/RSA with SHA-256, a random 16-byte serial,
 * basicConstraints CA:TRUE (critical) so a client can trust the
 * certificate itself as its CA, subject and authority key identifiers, and
 * the SANs given. The key is PKCS#8 PEM, unencrypted.
 *
 * The library is imported on first use, so nothing that merely imports the
 * transport layer (the agent, the SDK) pays for loading it.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import { thumbprintOfDer } from './thumbprint.js';

export interface CertificateRequest {
  /** Subject CN (characters that would need escaping in a DN become `_`). */
  commonName: string;
  dnsNames?: readonly string[];
  ipAddresses?: readonly string[];
  /** Validity from now (default 3650). The certificate is valid from one hour ago, for clock skew. */
  days?: number;
  /** Key type (default 'ec': P-256). */
  keyType?: 'ec' | 'rsa';
}

export interface MadeCertificate {
  certPem: string;
  keyPem: string;
  /** SHA-256 thumbprint, `AB:CD:…`. */
  thumbprint: string;
}

type X509Module = typeof import('@peculiar/x509');
let loaded: Promise<X509Module> | undefined;

function x509(): Promise<X509Module> {
  loaded ??= (async () => {
    await import('reflect-metadata');
    const lib = await import('@peculiar/x509');
    lib.cryptoProvider.set(webcrypto as unknown as Parameters<typeof lib.cryptoProvider.set>[0]);
    return lib;
  })();
  return loaded;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END ${label}-----\n`;
}

/** Makes a self-signed certificate and its key. */
export async function makeSelfSignedCertificate(request: CertificateRequest): Promise<MadeCertificate> {
  const lib = await x509();
  const subtle = webcrypto.subtle;
  const rsa = request.keyType === 'rsa';
  const algorithm = rsa
    ? {
        name: 'RSASSA-PKCS1-v1_5',
        hash: 'SHA-256',
        publicExponent: new Uint8Array([1, 0, 1]),
        modulusLength: 2048,
      }
    : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const days = request.days ?? 3650;
  const now = Date.now();
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // positive
  const cn = request.commonName.replace(/[/\\=+,;<>"#]/g, '_') || 'outpost-agent';
  const names = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(request.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: InstanceType<X509Module['Extension']>[] = [
    new lib.BasicConstraintsExtension(true, undefined, true),
    await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await lib.AuthorityKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (names.length > 0) extensions.push(new lib.SubjectAlternativeNameExtension(names));
  const cert = await lib.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [cn] }],
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + days * 86_400_000),
    signingAlgorithm: algorithm,
    keys,
    extensions,
  });
  const pkcs8 = await subtle.exportKey('pkcs8', keys.privateKey);
  return {
    certPem: cert.toString('pem').replace(/\r\n/g, '\n').trimEnd() + '\n',
    keyPem: pem('PRIVATE KEY', pkcs8),
    thumbprint: thumbprintOfDer(new Uint8Array(cert.rawData)),
  };
}
