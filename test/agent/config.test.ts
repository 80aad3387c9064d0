/**
 * Config parsing in-process: defaults, resolution of relative paths,
 * validation errors naming the element, warnings, TLS material checks.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import {
  ConfigError,
  DEFAULTS,
  findConfigFile,
  isLoopbackAddress,
  parseAddressRules,
  parseConfig,
  renderConfigXml,
} from '../../src/agent/config.js';
import { buildAddressFilter } from '../../src/agent/listener.js';
import { AgentType, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PORT } from '../../src/protocol/index.js';
import { makeTestCertificate, tempDir } from '../helpers/agent.js';

const KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

let dir: string;
before(async () => {
  dir = await tempDir();
});
after(() => rm(dir, { recursive: true, force: true }));

async function expectError(xml: string, element: string, message: RegExp): Promise<void> {
  await assert.rejects(parseConfig(xml, join(dir, 'InedoAgent.config')), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.element, element);
    assert.match(err.message, message);
    assert.ok(err.message.startsWith(`${element}: `));
    return true;
  });
}

const wrap = (listener: string, top = '') =>
  `<InedoAgentConfig>${top}<Listener>${listener}</Listener></InedoAgentConfig>`;
const AES = `<Encryption Mode="aes"><Key>${KEY}</Key></Encryption>`;

describe('config', () => {
  it('MaxDetachedSpoolSize: bytes, at least 64 KiB; a bad value stops the start naming it', async () => {
    const c = await parseConfig(
      wrap(
        AES,
        '<MaxDetachedSpoolSize>1048576</MaxDetachedSpoolSize><DetachedSpoolPath>sp</DetachedSpoolPath>',
      ),
      join(dir, 'InedoAgent.config'),
    );
    assert.equal(c.maxDetachedSpoolSize, 1048576);
    assert.equal(c.detachedSpoolPath, join(dir, 'sp'));
    await expectError(
      wrap(AES, '<MaxDetachedSpoolSize>1000</MaxDetachedSpoolSize>'),
      'MaxDetachedSpoolSize',
      /out of range: must be between 65536/,
    );
    await expectError(
      wrap(AES, '<MaxDetachedSpoolSize>1G</MaxDetachedSpoolSize>'),
      'MaxDetachedSpoolSize',
      /not a whole number/,
    );
  });

  it('applies defaults under <configdir>/state and hides the key', async () => {
    const c = await parseConfig(wrap(AES), join(dir, 'InedoAgent.config'));
    assert.equal(c.listener.address, DEFAULTS.address);
    assert.equal(c.listener.port, DEFAULT_PORT);
    assert.equal(c.listener.maxMessageSize, DEFAULT_MAX_MESSAGE_SIZE);
    assert.equal(c.listener.maxConcurrentHandshakes, 100);
    assert.equal(c.listener.maxHandshakesPerAddress, 32);
    assert.equal(c.listener.handshakeTimeoutMs, 30_000);
    assert.equal(c.detachedSessionTimeoutMs, 1_800_000);
    assert.equal(c.sessionIdleTimeoutMs, 1_800_000);
    assert.equal(c.maxProcessesPerSession, 64);
    assert.equal(c.hostIdleTimeoutMs, 60_000);
    assert.equal(c.maxHostProcesses, 64);
    assert.equal(c.rootPaths[AgentType.Otter], join(dir, 'state', 'Otter'));
    assert.equal(c.extensionCachePath, join(dir, 'state', 'ExtensionCache'));
    assert.equal(c.maxDetachedSpoolSize, 256 * 1024 * 1024);
    assert.equal(c.detachedSpoolPath, join(dir, 'state', 'spool'));
    assert.equal(c.allowedRoots, null);
    assert.equal(c.logFile, null);
    assert.deepEqual(c.listener.encryption.key?.reveal(), Buffer.from(KEY, 'hex'));
    assert.ok(!JSON.stringify(c).includes(KEY), 'JSON never shows the key');
    assert.ok(!inspect(c, { depth: 10 }).includes(KEY), 'inspect never shows the key');
    assert.deepEqual(c.warnings, []);
  });

  it('reads every element, resolving relative paths against the config dir', async () => {
    const xml = renderConfigXml({
      mode: 'aes',
      keyHex: KEY.slice(0, 32),
      address: '::1',
      port: 1234,
      logFile: 'logs/agent.log',
      extensionCachePath: 'ext',
      rootPaths: { BuildMaster: '/srv/bm', Hedgehog: 'hh' },
      allowedRoots: ['/srv/a', '/srv/b/'],
      sessionIdleTimeout: 2.5,
      detachedSessionTimeout: 60,
      maxProcessesPerSession: 3,
      maxOpenFilesPerSession: 7,
      hostIdleTimeout: 0.5,
      maxHostProcesses: 9,
      maxConcurrentHandshakes: 5,
      maxHandshakesPerAddress: 3,
      handshakeTimeout: 0.25,
      allowedAddresses: ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8'],
      maxMessageSize: 65536,
    });
    const c = await parseConfig(xml, join(dir, 'sub', 'my.config'));
    assert.equal(c.configDir, join(dir, 'sub'));
    assert.equal(c.logFile, join(dir, 'sub', 'logs', 'agent.log'));
    assert.equal(c.extensionCachePath, join(dir, 'sub', 'ext'));
    assert.equal(c.rootPaths[AgentType.BuildMaster], '/srv/bm');
    assert.equal(c.rootPaths[AgentType.Hedgehog], join(dir, 'sub', 'hh'));
    assert.deepEqual(c.allowedRoots, ['/srv/a', '/srv/b']);
    assert.equal(c.sessionIdleTimeoutMs, 2500);
    assert.equal(c.detachedSessionTimeoutMs, 60_000);
    assert.equal(c.maxProcessesPerSession, 3);
    assert.equal(c.maxOpenFilesPerSession, 7);
    assert.equal(c.hostIdleTimeoutMs, 500);
    assert.equal(c.maxHostProcesses, 9);
    assert.equal(c.listener.maxConcurrentHandshakes, 5);
    assert.equal(c.listener.maxHandshakesPerAddress, 3);
    assert.equal(c.listener.handshakeTimeoutMs, 250);
    assert.equal(c.listener.maxMessageSize, 65536);
    assert.equal(c.listener.address, '::1');
    assert.equal(c.listener.port, 1234);
    assert.equal(c.listener.encryption.key?.reveal().length, 16);
    assert.deepEqual(
      c.listener.allowedAddresses.map((r) => r.text),
      ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8'],
    );
  });

  it('names the element for each invalid value', async () => {
    await expectError(
      wrap('<Encryption Mode="aes"><Key>xyz</Key></Encryption>'),
      'Listener/Encryption/Key',
      /AES key must be 32, 48 or 64 hex digits/,
    );
    await expectError(
      wrap(`<Encryption Mode="aes"><Key>${KEY}00</Key></Encryption>`),
      'Listener/Encryption/Key',
      /32, 48 or 64/,
    );
    await expectError(wrap('<Encryption Mode="aes"/>'), 'Listener/Encryption/Key', /missing/);
    await expectError(wrap('<Encryption/>'), 'Listener/Encryption/@Mode', /missing/);
    await expectError(
      wrap('<Encryption Mode="des"/>'),
      'Listener/Encryption/@Mode',
      /"des" must be aes, ssl or none/,
    );
    await expectError(wrap('<Port>1</Port>'), 'Listener/Encryption', /missing/);
    await expectError('<InedoAgentConfig/>', 'Listener', /missing/);
    await expectError(wrap(`${AES}<Port>-1</Port>`), 'Listener/Port', /not a whole number/);
    await expectError(wrap(`${AES}<Port>65536</Port>`), 'Listener/Port', /out of range/);
    await expectError(wrap(`${AES}<Port>1</Port><Port>2</Port>`), 'Listener/Port', /more than once/);
    await expectError(
      wrap(`${AES}<MaxMessageSize>1000</MaxMessageSize>`),
      'Listener/MaxMessageSize',
      /out of range/,
    );
    await expectError(
      wrap(`${AES}<HandshakeTimeout>0</HandshakeTimeout>`),
      'Listener/HandshakeTimeout',
      /out of range/,
    );
    await expectError(
      wrap(`${AES}<HandshakeTimeout>ten</HandshakeTimeout>`),
      'Listener/HandshakeTimeout',
      /not a number of seconds/,
    );
    await expectError(
      wrap(`${AES}<MaxConcurrentHandshakes>0</MaxConcurrentHandshakes>`),
      'Listener/MaxConcurrentHandshakes',
      /out of range/,
    );
    await expectError(
      wrap(`${AES}<MaxHandshakesPerAddress>many</MaxHandshakesPerAddress>`),
      'Listener/MaxHandshakesPerAddress',
      /not a whole number/,
    );
    await expectError(
      wrap(`${AES}<MaxHandshakesPerAddress>0</MaxHandshakesPerAddress>`),
      'Listener/MaxHandshakesPerAddress',
      /out of range/,
    );
    await expectError(wrap(AES, '<Connections Enabled="yes"/>'), 'Connections/@Enabled', /true or false/);
    await expectError(
      wrap(`${AES}<AllowedAddresses>10.0.0.0/33</AllowedAddresses>`),
      'Listener/AllowedAddresses',
      /prefix length/,
    );
    await expectError(
      wrap(`${AES}<AllowedAddresses>example.com</AllowedAddresses>`),
      'Listener/AllowedAddresses',
      /not an IP address/,
    );
    await expectError(
      wrap(`${AES}<Address>bad address!</Address>`),
      'Listener/Address',
      /not an IP address or host name/,
    );
    await expectError(
      wrap(AES, '<AllowedRoots>relative/dir</AllowedRoots>'),
      'AllowedRoots',
      /not an absolute path/,
    );
    await expectError(
      wrap(AES, '<SessionIdleTimeout>-5</SessionIdleTimeout>'),
      'SessionIdleTimeout',
      /not a number/,
    );
    await expectError(
      wrap(AES, '<MaxHostProcesses>0</MaxHostProcesses>'),
      'MaxHostProcesses',
      /out of range/,
    );
    await expectError(wrap(AES, '<HostIdleTimeout>0</HostIdleTimeout>'), 'HostIdleTimeout', /out of range/);
    await expectError(
      wrap(AES, '<MaxProcessesPerSession>0</MaxProcessesPerSession>'),
      'MaxProcessesPerSession',
      /out of range/,
    );
    await expectError(
      wrap(AES).replace('<Listener>', '<Listener Enabled="maybe">'),
      'Listener/@Enabled',
      /true or false/,
    );
    await expectError('<Other/>', 'InedoAgentConfig', /no <InedoAgentConfig> root element \(found <Other>\)/);
    await expectError('<InedoAgentConfig><Listener>', 'InedoAgentConfig', /not well-formed XML/);
  });

  it('warns about unknown elements and attributes, and ignored keys', async () => {
    const xml = wrap(
      '<Encryption Mode="none" Strength="max"><Key>00</Key></Encryption><Address>127.0.0.1</Address><Colour>blue</Colour>',
      '<Frobnicate/>',
    );
    const c = await parseConfig(xml, join(dir, 'x.config'));
    assert.ok(
      c.warnings.some((w) => w === 'Frobnicate: unknown element, ignored'),
      c.warnings.join('\n'),
    );
    assert.ok(c.warnings.some((w) => w === 'Listener/Colour: unknown element, ignored'));
    assert.ok(c.warnings.some((w) => w === 'Listener/Encryption/@Strength: unknown attribute, ignored'));
    assert.ok(c.warnings.some((w) => w.startsWith('Listener/Encryption/Key: ignored in mode none')));
    assert.ok(!c.warnings.some((w) => w.includes('ANYONE')), 'no loud warning on loopback');
  });

  it('knows every element of the contract, <Connections> included', async () => {
    const xml = wrap(
      `${AES}<MaxHandshakesPerAddress>4</MaxHandshakesPerAddress>`,
      '<ExtensionCachePath>ext</ExtensionCachePath><Connections Enabled="true"><Server Host="h" Key="k"/></Connections>',
    );
    const c = await parseConfig(xml, join(dir, 'x.config'));
    assert.equal(c.listener.maxHandshakesPerAddress, 4);
    assert.equal(c.extensionCachePath, join(dir, 'ext'));
    assert.deepEqual(
      c.warnings.filter((w) => w.includes('unknown')),
      [],
      'no element of §9 is unknown',
    );
    assert.equal(c.connections.enabled, true);
    assert.equal(c.connections.servers[0]!.label, 'h:46336');
    assert.equal(c.connections.servers[0]!.maxConnections, 8);
    assert.equal(JSON.stringify(c.connections.servers[0]!.key), '"[redacted]"', 'the key is a Secret');
  });

  it('<Connections>: servers, ports, thumbprints, and the listener off', async () => {
    const tp = 'ab'.repeat(32);
    const c = await parseConfig(
      `<InedoAgentConfig><Listener Enabled="false"/><Connections Enabled="true">
        <Server Host="hub.example.com:4000" Key="k1" Thumbprint="${tp.toUpperCase().match(/../g)!.join(':')}" MaxConnections="3"/>
        <Server Host="[::1]" Key="k2"/>
      </Connections></InedoAgentConfig>`,
      join(dir, 'o.config'),
    );
    assert.equal(c.listener.enabled, false);
    const [a, b] = c.connections.servers;
    assert.deepEqual([a!.host, a!.port, a!.thumbprint, a!.maxConnections], ['hub.example.com', 4000, tp, 3]);
    assert.deepEqual([b!.host, b!.port, b!.label, b!.thumbprint], ['::1', 46336, '[::1]:46336', null]);
    // No <Listener> at all is fine for an outbound agent.
    const d = await parseConfig(
      '<InedoAgentConfig><Connections Enabled="true"><Server Host="h" Key="k"/></Connections></InedoAgentConfig>',
      join(dir, 'o2.config'),
    );
    assert.equal(d.listener.enabled, false);
  });

  it('<Connections>: a malformed Host, Key, Thumbprint or MaxConnections stops the start, naming it', async () => {
    const srv = (attrs: string) =>
      `<InedoAgentConfig><Listener Enabled="false"/><Connections Enabled="true"><Server ${attrs}/></Connections></InedoAgentConfig>`;
    await expectError(srv('Key="k"'), 'Connections/Server[1]/@Host', /missing/);
    await expectError(srv('Host="bad host!" Key="k"'), 'Connections/Server[1]/@Host', /host name/);
    await expectError(srv('Host="h:99999" Key="k"'), 'Connections/Server[1]/@Host', /port/);
    await expectError(srv('Host="h"'), 'Connections/Server[1]/@Key', /missing/);
    await expectError(srv(`Host="h" Key="${'k'.repeat(1025)}"`), 'Connections/Server[1]/@Key', /printable/);
    await expectError(
      srv('Host="h" Key="k" Thumbprint="abc"'),
      'Connections/Server[1]/@Thumbprint',
      /SHA-256/,
    );
    await expectError(
      srv('Host="h" Key="k" MaxConnections="0"'),
      'Connections/Server[1]/@MaxConnections',
      /1 to 1000/,
    );
    await expectError(
      '<InedoAgentConfig><Listener Enabled="false"/><Connections Enabled="true"/></InedoAgentConfig>',
      'Connections/Server',
      /lists no/,
    );
    await expectError(
      '<InedoAgentConfig><Listener Enabled="false"/></InedoAgentConfig>',
      'Listener/@Enabled',
      /serve nobody/,
    );
  });

  it('warns loudly about mode none on a non-loopback address', async () => {
    const c = await parseConfig(
      wrap('<Encryption Mode="None"/><Address>0.0.0.0</Address>'),
      join(dir, 'x.config'),
    );
    assert.equal(c.listener.encryption.mode, 'none');
    assert.ok(c.warnings.some((w) => w.includes('ANYONE WHO CAN REACH PORT 46336')));
  });

  it('loads a TLS certificate and key, and refuses bad or mismatched ones naming the element', async () => {
    const certs = join(dir, 'certs');
    await mkdir(certs);
    const a = await makeTestCertificate(certs, 'a');
    const b = await makeTestCertificate(certs, 'b');
    const ssl = (cert: string, key: string) =>
      wrap(
        `<Encryption Mode="ssl"><CertificateFile>${cert}</CertificateFile><KeyFile>${key}</KeyFile></Encryption>`,
      );
    const c = await parseConfig(ssl('certs/a.crt', 'certs/a.key'), join(dir, 'x.config'));
    assert.equal(c.listener.encryption.thumbprint, a.thumbprint);
    await expectError(
      wrap('<Encryption Mode="ssl"><CertificateName>agent</CertificateName></Encryption>'),
      'Listener/Encryption/CertificateName',
      /not supported.*CertificateFile/,
    );
    assert.ok(c.listener.encryption.secureContext);
    assert.ok(!JSON.stringify(c).includes('PRIVATE KEY'));

    await writeFile(join(certs, 'garbage.pem'), 'not a certificate');
    await expectError(
      ssl('certs/garbage.pem', 'certs/a.key'),
      'Listener/Encryption/CertificateFile',
      /not a valid PEM certificate/,
    );
    await expectError(
      ssl('certs/a.crt', 'certs/garbage.pem'),
      'Listener/Encryption/KeyFile',
      /not a valid unencrypted PEM private key/,
    );
    await expectError(
      ssl('certs/a.crt', 'certs/b.key'),
      'Listener/Encryption/KeyFile',
      /does not match the certificate/,
    );
    await expectError(
      ssl('certs/none.crt', 'certs/a.key'),
      'Listener/Encryption/CertificateFile',
      /cannot read .*ENOENT/,
    );
    await expectError(wrap('<Encryption Mode="ssl"/>'), 'Listener/Encryption/CertificateFile', /missing/);
    assert.ok(b.thumbprint !== a.thumbprint);
  });

  it('finds ./InedoAgent.config first and says where it looked otherwise', async () => {
    const cwd = join(dir, 'lookup');
    await mkdir(cwd);
    await writeFile(join(cwd, 'InedoAgent.config'), wrap(AES));
    assert.equal(await findConfigFile(undefined, cwd), join(cwd, 'InedoAgent.config'));
    assert.equal(await findConfigFile('InedoAgent.config', cwd), join(cwd, 'InedoAgent.config'));
    await assert.rejects(findConfigFile('missing.config', cwd), /--config: .*missing\.config does not exist/);
  });

  it('parses address rules and matches IPv4, IPv6 and IPv4-mapped peers', () => {
    const allow = buildAddressFilter(parseAddressRules('127.0.0.1; 10.0.0.0/8, fd00::/8 [::1]'))!;
    assert.ok(allow('127.0.0.1'));
    assert.ok(allow('::ffff:127.0.0.1'));
    assert.ok(allow('10.200.3.4'));
    assert.ok(allow('::ffff:10.1.1.1'));
    assert.ok(allow('fd12::1'));
    assert.ok(allow('::1'));
    assert.ok(!allow('127.0.0.2'));
    assert.ok(!allow('11.0.0.1'));
    assert.ok(!allow('::ffff:192.168.0.1'));
    assert.ok(!allow('fe80::1'));
    assert.ok(!allow('garbage'));
    assert.equal(buildAddressFilter([]), null, 'empty list: everyone');
    assert.ok(isLoopbackAddress('127.1.2.3') && isLoopbackAddress('::1') && isLoopbackAddress('localhost'));
    assert.ok(!isLoopbackAddress('0.0.0.0') && !isLoopbackAddress('::'));
  });
});
