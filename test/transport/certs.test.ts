/**
 * In-process self-signed certificates (src/transport/certs.ts): the names,
 * the key pair and a real TLS handshake that trusts the certificate itself.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { connect, createServer } from 'node:tls';
import { makeSelfSignedCertificate } from '../../src/transport/index.js';

describe('makeSelfSignedCertificate', () => {
  it('makes an EC P-256 CA certificate with the SANs, its key and its thumbprint', async () => {
    const c = await makeSelfSignedCertificate({
      commonName: 'agent/01',
      dnsNames: ['agent01.example.com', 'localhost'],
      ipAddresses: ['127.0.0.1', '::1', '10.0.0.5'],
      days: 30,
    });
    const x = new X509Certificate(c.certPem);
    assert.equal(x.subject, 'CN=agent_01');
    assert.equal(
      x.subjectAltName,
      'DNS:agent01.example.com, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.5',
    );
    assert.equal(x.ca, true);
    assert.equal(x.fingerprint256, c.thumbprint);
    const key = createPrivateKey(c.keyPem);
    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(x.checkPrivateKey(key));
    const days = (Date.parse(x.validTo) - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, `valid for ${days} days`);
    assert.ok(x.verify(x.publicKey), 'self-signed');
  });

  it('makes RSA 2048 on request', async () => {
    const c = await makeSelfSignedCertificate({ commonName: 'r', keyType: 'rsa' });
    const key = createPrivateKey(c.keyPem);
    assert.equal(key.asymmetricKeyType, 'rsa');
    assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
    assert.equal(new X509Certificate(c.certPem).subjectAltName, undefined);
  });

  it('serves TLS that a client verifying by the certificate itself (and its host name) accepts', async () => {
    const c = await makeSelfSignedCertificate({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const server = createServer({ cert: c.certPem, key: c.keyPem }, (s) => s.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const socket = connect({ host: '127.0.0.1', port, ca: c.certPem, servername: 'localhost' });
      await once(socket, 'secureConnect');
      assert.equal(socket.authorized, true);
      assert.equal(socket.getPeerCertificate().fingerprint256, c.thumbprint);
      socket.destroy();
    } finally {
      server.close();
    }
  });
});
