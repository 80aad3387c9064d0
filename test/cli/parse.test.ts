/**
 * The CLI's pure parts, in process: HOST[:PORT] and HOST:PATH syntax, the
 * hosts file, connection settings, error messages and exit codes, and that
 * every command's --help carries examples.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { connectionSettings, looksRemote, parseRemote, parseTarget } from '../../src/cli/connection.js';
import { describeError, EXIT, UsageError } from '../../src/cli/errors.js';
import { pumpPrefixed } from '../../src/cli/fanout.js';
import { formatCount } from '../../src/cli/format.js';
import { parseHosts } from '../../src/cli/hosts.js';
import { buildProgram } from '../../src/cli/program.js';
import { createProgress } from '../../src/cli/progress.js';
import { HandshakeError, RemoteError, TimeoutError } from '../../src/client/index.js';

describe('HOST[:PORT]', () => {
  it('parses names, ports and IPv6 in brackets or bare', () => {
    assert.deepEqual(parseTarget('web01'), { host: 'web01', port: 46336, label: 'web01' });
    assert.deepEqual(parseTarget('10.0.0.5:4000'), { host: '10.0.0.5', port: 4000, label: '10.0.0.5:4000' });
    assert.deepEqual(parseTarget('[::1]:46336'), { host: '::1', port: 46336, label: '[::1]' });
    assert.deepEqual(parseTarget('[fd00::5]:9'), { host: 'fd00::5', port: 9, label: '[fd00::5]:9' });
    assert.deepEqual(parseTarget('::1'), { host: '::1', port: 46336, label: '[::1]' });
  });

  it('rejects what is not an address, saying how to write one', () => {
    for (const bad of [
      '',
      'web01:0',
      'web01:65536',
      'web01:http',
      '[::1',
      '[nothost]:1',
      '[::1]x',
      'a b',
      ':46336',
    ])
      assert.throws(
        () => parseTarget(bad),
        (e: Error) => e instanceof UsageError && /HOST|port/.test(e.message),
        bad,
      );
  });
});

describe('HOST:PATH', () => {
  it('parses host, optional port and path (Windows paths stay whole)', () => {
    assert.deepEqual(parseRemote('web01:/srv/app'), {
      host: 'web01',
      port: 46336,
      label: 'web01',
      path: '/srv/app',
    });
    assert.deepEqual(parseRemote('web01:4000:/srv'), {
      host: 'web01',
      port: 4000,
      label: 'web01:4000',
      path: '/srv',
    });
    assert.deepEqual(parseRemote('[::1]:/x'), { host: '::1', port: 46336, label: '[::1]', path: '/x' });
    assert.deepEqual(parseRemote('[::1]:7:rel/x'), { host: '::1', port: 7, label: '[::1]:7', path: 'rel/x' });
    assert.equal(parseRemote('win:C:\\Temp\\x').path, 'C:\\Temp\\x');
  });

  it('rejects a missing colon, host or path with a message naming the fix', () => {
    assert.throws(() => parseRemote('web01'), /"web01" is not a remote path \(no colon\).*HOST:PATH/);
    assert.throws(() => parseRemote(':/srv'), /does not start with a host name/);
    assert.throws(() => parseRemote('web01:'), /names no remote path; add it after the colon/);
    assert.throws(() => parseRemote('web01:70000:/x'), /port "70000" must be a number from 1 to 65535/);
    assert.throws(() => parseRemote('[::1/x'), /is not a remote path/);
  });

  it('tells local from remote arguments', () => {
    assert.equal(looksRemote('web01:/srv'), true);
    assert.equal(looksRemote('[::1]:/srv'), true);
    assert.equal(looksRemote('./dist'), false);
    assert.equal(looksRemote('C:\\build'), false);
    assert.equal(looksRemote('./a:b'), false);
  });
});

describe('hosts file', () => {
  it('skips comments and blank lines, keeps per-host settings', () => {
    const hosts = parseHosts(
      `# web tier\n\nweb01\n  web02:4000   key=${'ab'.repeat(32)}  # second\n[::1]:5 mode=none\n`,
      'hosts.txt',
    );
    assert.deepEqual(
      hosts.map((h) => [h.target.label, h.line, h.flags]),
      [
        ['web01', 3, {}],
        ['web02:4000', 4, { key: 'ab'.repeat(32) }],
        ['[::1]:5', 5, { mode: 'none' }],
      ],
    );
  });

  it('names the file and line of a mistake', () => {
    assert.throws(() => parseHosts('web01\nweb02:x\n', 'h.txt'), /^UsageError: h\.txt:2: .*port "x"/);
    assert.throws(() => parseHosts('web01 user=root\n', 'h.txt'), /h\.txt:1: "user" is not a host setting/);
  });

  it('prefixes every line, including a last one without a newline', async () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _e, cb) {
        out += String(chunk);
        cb();
      },
    });
    await pumpPrefixed(Readable.from([Buffer.from('a\nb'), Buffer.from('c\n\nd')]), sink, 'h1: ');
    assert.equal(out, 'h1: a\nh1: bc\nh1: \nh1: d\n');
  });
});

describe('connection settings', () => {
  const key = 'ab'.repeat(32);
  it('infers the mode: --key → aes, --thumbprint → ssl, OUTPOST_KEY → aes, nothing → none', async () => {
    assert.equal((await connectionSettings({ key }, {})).mode, 'aes');
    assert.equal(
      (await connectionSettings({ thumbprint: 'AB:'.repeat(31) + 'AB' }, { OUTPOST_KEY: key })).mode,
      'ssl',
    );
    assert.equal((await connectionSettings({}, { OUTPOST_KEY: key })).key, key);
    assert.equal((await connectionSettings({}, {})).mode, 'none');
    assert.equal((await connectionSettings({ agentType: 'Otter' }, {})).agentType, 'Otter');
    assert.equal((await connectionSettings({ agentType: '3' }, {})).agentType, 'Hedgehog');
  });

  it('rejects bad values without echoing the key', async () => {
    await assert.rejects(connectionSettings({ key: 'secret12' }, {}), (e: Error) => {
      assert.match(e.message, /--key: the AES key must be 32, 48 or 64 hex digits \(got 8 characters\)/);
      assert.ok(!e.message.includes('secret12'));
      return true;
    });
    await assert.rejects(
      connectionSettings({ mode: 'aes' }, {}),
      /mode aes needs the agent's key; pass --key HEX/,
    );
    await assert.rejects(connectionSettings({ mode: 'tls' }, {}), /--mode: "tls" must be none, ssl or aes/);
    await assert.rejects(
      connectionSettings({ mode: 'ssl' }, { OUTPOST_KEY: key }),
      /mode ssl needs .*--ca FILE.*--thumbprint HEX/,
    );
    await assert.rejects(connectionSettings({ agentType: 'jenkins' }, {}), /--agent-type: "jenkins"/);
    await assert.rejects(connectionSettings({ timeout: '5s' }, {}), /--timeout: "5s" must be a number/);
    await assert.rejects(connectionSettings({ thumbprint: 'abc' }, {}), /--thumbprint: expected the SHA-256/);
    const dir = await mkdtemp(join(tmpdir(), 'outpost-cli-parse-'));
    try {
      await assert.rejects(
        connectionSettings({ ca: join(dir, 'missing.pem') }, {}),
        /--ca: cannot read .*missing\.pem \(ENOENT\)/,
      );
      await writeFile(join(dir, 'not.pem'), 'hello');
      await assert.rejects(connectionSettings({ ca: join(dir, 'not.pem') }, {}), /is not a PEM certificate/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('progress', () => {
  const fakeStream = (isTTY: boolean) => {
    const s = {
      isTTY,
      columns: 100,
      text: '',
      write: (t: string) => {
        s.text += t;
        return true;
      },
    };
    return s;
  };
  const step = (bytes: number, files: number) => ({
    file: 'f',
    bytes,
    totalBytes: 4 << 20,
    files,
    totalFiles: 4,
  });

  it('on a terminal: one bar redrawn in place with percent, throughput and ETA', () => {
    let t = 0;
    const tty = fakeStream(true);
    const p = createProgress({ label: 'put', stream: tty as never, now: () => t });
    t = 1000;
    p.update(step(1 << 20, 1));
    assert.match(
      tty.text,
      /^\r\x1b\[Kput \[#{8}·{22}\] {2}25% 1\.0 MiB\/4\.0 MiB {2}1\.0 MiB\/s {2}ETA 3\.00 s {2}1\/4 files$/,
    );
    t = 1050;
    p.update(step(2 << 20, 2));
    assert.equal(tty.text.split('\r').length, 2, 'not redrawn within 100 ms');
    t = 2000;
    p.done({ files: 4, bytes: 4 << 20 });
    assert.match(tty.text, /\r\x1b\[Kput: 4 files, 4\.0 MiB in 2\.00 s \(2\.0 MiB\/s\)\n$/);
  });

  it('elsewhere: plain lines; quiet: nothing', () => {
    let t = 0;
    const plain = fakeStream(false);
    const p = createProgress({ label: 'get', stream: plain as never, now: () => t });
    t = 1500;
    p.update(step(1 << 20, 1));
    p.update(step(2 << 20, 2));
    assert.equal(plain.text, 'get: 25% 1.0 MiB of 4.0 MiB, 1 of 4 files, 683 KiB/s\n');
    const quiet = fakeStream(false);
    const q = createProgress({ label: 'get', stream: quiet as never, quiet: true });
    q.update(step(1, 1));
    q.done();
    assert.equal(quiet.text, '');
  });
});

describe('errors', () => {
  it('map to exit codes: usage 1, connection 2, remote 3', () => {
    assert.deepEqual(describeError(new UsageError('bad')), { message: 'bad', exitCode: EXIT.USAGE });
    const refused = describeError(
      new HandshakeError('CONNECT_FAILED', 'cannot connect to the agent at h:1: ECONNREFUSED'),
    );
    assert.equal(refused.exitCode, EXIT.CONNECTION);
    assert.match(
      refused.message,
      /^cannot connect to the agent at h:1 \(connection refused\); check the host/,
    );
    assert.equal(describeError(new TimeoutError('x timed out')).exitCode, EXIT.CONNECTION);
    const nf = describeError(
      new RemoteError('NotFound', '/x: no such file or directory', 'GetFileInfo', { path: '/x' }),
    );
    assert.equal(nf.exitCode, EXIT.REMOTE);
    assert.match(nf.message, /^NotFound: \/x: no such file or directory \(GetFileInfo\); check the path/);
  });
});

describe('help', () => {
  it('every command has examples, and the program lists the exit codes', async () => {
    const program = await buildProgram();
    const helpOf = (cmd: import('commander').Command) => {
      let text = '';
      cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
      cmd.outputHelp();
      return text;
    };
    const top = helpOf(program);
    assert.match(top, /Exit codes:\n {2}0 {4}success\n {2}1 .*\n {2}2 .*connection.*\n {2}3 .*remote/);
    const names = program.commands.map((c) => c.name());
    for (const n of [
      'serve',
      'init',
      'start',
      'keygen',
      'cert',
      'ping',
      'info',
      'exec',
      'ls',
      'cat',
      'put',
      'get',
    ])
      assert.ok(names.includes(n), `${n} is registered`);
    for (const c of program.commands) {
      if (['serve', 'init', 'start'].includes(c.name())) continue;
      assert.match(helpOf(c), /\nExamples:\n {2}outpost /, `${c.name()} --help has examples`);
    }
  });

  it('a command line that names a command loads only its module; anything else loads them all', async () => {
    const names = async (...args: string[]) =>
      (await buildProgram(['node', 'outpost', ...args])).commands.map((c) => c.name());
    assert.deepEqual(await names('ls', '127.0.0.1:/'), ['ls']);
    assert.deepEqual(await names('kill', 'h', '1'), ['ps', 'kill', 'attach']);
    assert.deepEqual(await names('--version'), []);
    const all = (await buildProgram()).commands.map((c) => c.name());
    assert.ok(all.length > 20, 'every command without argv');
    // help, an unknown name (commander suggests the nearest) and completion see every command
    for (const args of [['--help'], ['lss'], ['completion', 'bash'], []])
      assert.deepEqual(await names(...args), all, args.join(' '));
  });
});

describe('formatCount', () => {
  it('groups thousands as en-US does', () => {
    for (const n of [0, 7, 999, 1000, 10_000, 123_456, 1_234_567, 1e12])
      assert.equal(formatCount(n), n.toLocaleString('en-US'), String(n));
  });
});
