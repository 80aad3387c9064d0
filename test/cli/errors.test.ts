/**
 * What the operator sees when something is wrong: one `outpost: …; …` line
 * on stderr and the documented exit code (1 usage, 2 connection, 3 remote).
 * Also `keygen` and `cert` output, and a mode-ssl agent reached with the
 * thumbprint `cert` printed.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliAgent, cli, closedPort, oneLineError, startCliAgent } from './helpers.js';

let a: CliAgent;
before(async () => {
  a = await startCliAgent();
});
after(() => a.stop());

describe('errors: one line, documented exit codes', () => {
  it('connection failures exit 2 and say what to check', async () => {
    const port = await closedPort();
    const good = { OUTPOST_KEY: a.keyHex };
    const [unreachable, wrongKey, modeNone, modeSsl] = await Promise.all([
      cli(['ping', `127.0.0.1:${port}`], good),
      cli(['ping', a.target, '--key', 'ab'.repeat(32)]),
      cli(['ls', a.remote('.')]),
      cli(['exec', a.target, '--mode', 'ssl', '--thumbprint', 'AB'.repeat(32), '--', 'true']),
    ]);
    assert.equal(unreachable.code, 2);
    assert.match(
      oneLineError(unreachable),
      new RegExp(
        `^outpost: cannot connect to the agent at 127\\.0\\.0\\.1:${port} \\(connection refused\\); check the host and port`,
      ),
    );
    assert.equal(wrongKey.code, 2);
    assert.match(
      oneLineError(wrongKey),
      /AES key is most likely not the agent's; check --key or OUTPOST_KEY/,
    );
    assert.ok(!wrongKey.stderr.includes('ab'.repeat(32)), 'the key is not echoed');
    assert.equal(modeNone.code, 2);
    assert.match(
      oneLineError(modeNone),
      /uses encryption mode "aes" but this client asked for "none"; pass the agent's AES key with --key HEX or OUTPOST_KEY/,
    );
    assert.equal(modeSsl.code, 2);
    assert.match(oneLineError(modeSsl), /uses encryption mode "aes" but this client asked for "ssl"/);
  });

  it('a missing remote path exits 3 (NotFound), naming the path', async () => {
    const env = { OUTPOST_KEY: a.keyHex };
    const [ls, get, cat] = await Promise.all([
      cli(['ls', a.remote('no/such/dir')], env),
      cli(['get', a.remote('missing.txt'), join(a.root, 'x')], env),
      cli(['cat', a.remote('missing.txt')], env),
    ]);
    for (const r of [ls, get, cat]) {
      assert.equal(r.code, 3, r.stderr);
      assert.match(oneLineError(r), /^outpost: NotFound: .*(no\/such\/dir|missing\.txt).*; check the path/);
    }
    await assert.rejects(stat(join(a.root, 'x')), { code: 'ENOENT' }, 'nothing was created locally');
  });

  it('bad arguments exit 1 before connecting', async () => {
    const [noColon, noPath, badPort, noHost, badKey, missingArg, unknownOpt, noLocal] = await Promise.all([
      cli(['ls', '127.0.0.1']),
      cli(['cat', `${a.target}:`]),
      cli(['rm', 'web01:99999:/x']),
      cli(['mkdir', ':/tmp/x']),
      cli(['ping', a.target, '--key', 'not-a-key']),
      cli(['get', a.remote('x')]),
      cli(['exec', a.target, '--frobnicate', '--', 'true']),
      cli(['put', join(a.root, 'no-such-local'), a.remote('dest')], { OUTPOST_KEY: a.keyHex }),
    ]);
    const expect: [typeof noColon, RegExp][] = [
      [
        noColon,
        /"127\.0\.0\.1" is not a remote path \(no colon\); write the agent's host, a colon and the path/,
      ],
      [noPath, /names no remote path; add it after the colon/],
      [badPort, /port "99999" must be a number from 1 to 65535/],
      [noHost, /does not start with a host name or IP address; write it as HOST:PATH/],
      [badKey, /--key: the AES key must be 32, 48 or 64 hex digits/],
      [missingArg, /missing required argument 'local'; see 'outpost get --help'/],
      [unknownOpt, /unknown option '--frobnicate'; if it is the remote command's, put the command after --/],
      [noLocal, /no-such-local: no such local file or directory; check the path/],
    ];
    for (const [r, re] of expect) {
      assert.equal(r.code, 1, `${re}: ${r.stderr}`);
      assert.match(oneLineError(r), re);
    }
    await assert.rejects(stat(join(a.root, 'dest')), { code: 'ENOENT' });
  });
});

describe('keygen and cert', () => {
  it('keygen prints a fresh 256-bit key as 64 hex digits', async () => {
    const [k1, k2] = await Promise.all([cli(['keygen']), cli(['keygen'])]);
    assert.match(k1.stdout, /^[0-9a-f]{64}\n$/);
    assert.match(k2.stdout, /^[0-9a-f]{64}\n$/);
    assert.notEqual(k1.stdout, k2.stdout);
  });

  it('cert writes NAME.crt/NAME.key, prints the SHA-256 thumbprint, and an ssl agent accepts it', async () => {
    const out = join(a.root, 'certs');
    const r = await cli([
      'cert',
      '--out',
      out,
      '--name',
      'agent01',
      '--host',
      'localhost',
      '--host',
      '127.0.0.1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^([0-9A-F]{2}:){31}[0-9A-F]{2}\n$/);
    const certPem = await readFile(join(out, 'agent01.crt'), 'utf8');
    const x509 = new X509Certificate(certPem);
    assert.equal(`${x509.fingerprint256}\n`, r.stdout);
    assert.match(x509.subjectAltName ?? '', /DNS:localhost.*IP Address:127\.0\.0\.1/);
    assert.equal((await stat(join(out, 'agent01.key'))).mode & 0o777, 0o600);

    const again = await cli(['cert', '--out', out, '--name', 'agent01']);
    assert.equal(again.code, 1);
    assert.match(oneLineError(again), /agent01\.crt already exists; pass --force/);

    const ssl = await startCliAgent({
      mode: 'ssl',
      root: join(a.root, 'ssl-agent'),
      certificate: {
        certFile: join(out, 'agent01.crt'),
        keyFile: join(out, 'agent01.key'),
        certPem,
        thumbprint: r.stdout.trim(),
      },
    });
    try {
      const [pinned, wrongPin] = await Promise.all([
        cli(['ping', ssl.target, '--thumbprint', r.stdout.trim()]),
        cli(['ping', ssl.target, '--thumbprint', 'AB'.repeat(32)]),
      ]);
      assert.equal(pinned.code, 0, pinned.stderr);
      assert.match(pinned.stdout, /mode ssl/);
      assert.equal(wrongPin.code, 2);
      assert.match(oneLineError(wrongPin), /check --thumbprint/);
    } finally {
      await ssl.agent.stop();
    }
  });
});
