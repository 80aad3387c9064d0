/**
 * `outpost ping`, `info`, `ls`, `cat`, `put`, `get`, `rm`, `mkdir` against a
 * real agent (mode aes, AllowedRoots = this file's temp dir).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type CliAgent, cli, hashTree, spawnCli, startCliAgent } from './helpers.js';

let a: CliAgent;
let env: NodeJS.ProcessEnv;
before(async () => {
  a = await startCliAgent();
  env = { OUTPOST_KEY: a.keyHex };
});
after(() => a.stop());

describe('outpost ping and info', () => {
  it('ping prints each round trip in milliseconds and a summary', async () => {
    const r = await cli(['ping', a.target, '-c', '3', '--interval', '10'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `^connected to ${a.target} \\(agent Outpost \\d+\\.\\d+\\.\\d+\\.\\d+ on \\S+, mode aes\\) in \\d+\\.\\d\\d ms\n`,
      ),
    );
    assert.equal(r.stdout.match(/^reply from 127\.0\.0\.1:\d+: time=\d+\.\d\d ms$/gm)?.length, 3);
    assert.match(r.stdout, /^3 replies: min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/m);
  });

  it('info prints the agent, and --json is one object', async () => {
    const [text, json] = await Promise.all([
      cli(['info', a.target], env),
      cli(['info', a.target, '--json', '--agent-type', 'otter'], env),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^product: +Outpost$/m);
    assert.match(text.stdout, /^version: +\S+ \(handshake \d+\.\d+\.\d+\.\d+\)$/m);
    assert.match(text.stdout, /^protocol: +1000$/m);
    assert.match(text.stdout, /^agent types: +Meta, Otter, BuildMaster, Hedgehog$/m);
    assert.match(text.stdout, /^encryption: +aes$/m);
    const info = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(info.port, a.agent.port);
    assert.equal(info.protocolVersion, 1000);
    assert.equal(info.platform, process.platform);
    assert.equal(typeof info.processId, 'number');
    assert.match(String(info.handshakeVersion), /^\d+\.\d+\.\d+\.\d+$/);
    assert.deepEqual(info.supportedAgentTypes, ['Meta', 'Otter', 'BuildMaster', 'Hedgehog']);
    assert.equal(info.agentType, 'Otter');
    assert.equal(info.rootPath, join(a.root, 'otter'));
  });
});

describe('files', () => {
  it('put a tree, ls it, get it back: every file hash-identical; cat streams one file', async () => {
    const src = join(a.root, 'local', 'site');
    await mkdir(join(src, 'css', 'deep'), { recursive: true });
    await mkdir(join(src, 'empty'));
    const big = randomBytes(3 * 1024 * 1024 + 17); // above one 1 MiB chunk: streamed, windowed
    await writeFile(join(src, 'index.html'), '<h1>hi</h1>\n');
    await writeFile(join(src, 'css', 'a.css'), 'body{}\n');
    await writeFile(join(src, 'css', 'deep', 'big.bin'), big);
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\necho run\n');
    // Explicit modes, whatever the umask: they travel with the files.
    await chmod(join(src, 'css', 'a.css'), 0o644);
    await chmod(join(src, 'css', 'deep', 'big.bin'), 0o644);
    await chmod(join(src, 'run.sh'), 0o755);
    await symlink('index.html', join(src, 'link.html'));

    const put = await cli(['put', '--parents', src, a.remote('remote/site')], env);
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stdout, '');
    // Not a TTY: plain progress lines, then the summary, and a note about the skipped link.
    assert.match(put.stderr, /^put: 100% 3\.0 MiB of 3\.0 MiB, 4 of 4 files, .*\/s$/m);
    assert.match(put.stderr, /^put: 4 files, 3\.0 MiB in .* \(.*\/s\)$/m);
    assert.match(
      put.stderr,
      /^put: skipped 1 symbolic link\(s\) or special file\(s\) in the sources: site\/link\.html$/m,
    );
    assert.equal((await stat(join(a.root, 'remote/site/run.sh'))).mode & 0o777, 0o755);

    const [ls, lsl, lsj] = await Promise.all([
      cli(['ls', a.remote('remote/site')], env),
      cli(['ls', '-r', '-l', '--include', '**/*.css', '--include', '**/*.bin', a.remote('remote/site')], env),
      cli(['ls', '-r', '--json', '--exclude', 'css', a.remote('remote/site')], env),
    ]);
    assert.equal(ls.stdout, 'css/\nempty/\nindex.html\nrun.sh\n', ls.stderr);
    const long = lsl.stdout.trimEnd().split('\n');
    assert.equal(long.length, 2, lsl.stdout);
    assert.match(long[0]!, /^-rw-r--r-- +7 +\d{4}-\d\d-\d\d \d\d:\d\d +css\/a\.css$/);
    assert.match(long[1]!, new RegExp(`^-rw-r--r-- +${big.length} +.* css/deep/big\\.bin$`));
    const entries = JSON.parse(lsj.stdout) as {
      name: string;
      fullPath: string;
      type: string;
      size: number;
      mode: number;
    }[];
    assert.deepEqual(
      entries.map((e) => `${e.type}:${e.name}`),
      ['directory:empty', 'file:index.html', 'file:run.sh'],
    );
    const run = entries.find((e) => e.name === 'run.sh')!;
    assert.equal(run.mode & 0o7777, 0o755);
    assert.equal(run.mode & 0o170000, 0o100000, 'the wire mode carries the type bits');
    assert.equal(run.fullPath, join(a.root, 'remote/site/run.sh'));

    // get into an existing directory: lands under the remote name; -q prints nothing.
    const back = join(a.root, 'local', 'back');
    await mkdir(back);
    const get = await cli(['get', '-q', a.remote('remote/site'), back], env);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stderr, '');
    const original = await hashTree(src);
    const copy = await hashTree(join(back, 'site'));
    assert.equal(copy.size, 4);
    assert.deepEqual([...copy.entries()].sort(), [...original.entries()].sort());
    assert.ok((await stat(join(back, 'site', 'empty'))).isDirectory(), 'empty directories come along');

    const cat = await runBinary(['cat', a.remote('remote/site/css/deep/big.bin')], env);
    assert.equal(cat.code, 0);
    assert.ok(cat.stdout.equals(big), 'cat output is the file, byte for byte');
  });

  it('put several sources into a directory (created), get a file to a new name', async () => {
    const dir = join(a.root, 'local', 'multi');
    await mkdir(join(dir, 'conf'), { recursive: true });
    await writeFile(join(dir, 'one.txt'), 'one\n');
    await writeFile(join(dir, 'conf', 'app.ini'), 'x=1\n');
    const put = await cli(
      ['put', '-q', '--parents', join(dir, 'one.txt'), join(dir, 'conf'), a.remote('remote/multi/')],
      env,
    );
    assert.equal(put.code, 0, put.stderr);
    assert.equal(await readFile(join(a.root, 'remote/multi/one.txt'), 'utf8'), 'one\n');
    assert.equal(await readFile(join(a.root, 'remote/multi/conf/app.ini'), 'utf8'), 'x=1\n');

    // Like scp: a missing parent is an error, unless --parents.
    const noParent = await cli(
      ['get', a.remote('remote/multi/one.txt'), join(a.root, 'local', 'got', 'renamed.txt')],
      env,
    );
    assert.equal(noParent.code, 1);
    assert.match(noParent.stderr, /local\/got: no such local directory; create it first or pass --parents/);
    const get = await cli(
      ['get', '--parents', a.remote('remote/multi/one.txt'), join(a.root, 'local', 'got', 'renamed.txt')],
      env,
    );
    assert.equal(get.code, 0, get.stderr);
    assert.equal(await readFile(join(a.root, 'local/got/renamed.txt'), 'utf8'), 'one\n');
    assert.match(get.stderr, /^get: 1 file, 4 B in /m);
  });

  it('mkdir makes parents; rm deletes files, directories only with -r', async () => {
    const mk = await cli(['mkdir', a.remote('made/a/b'), a.remote('made/c')], env);
    assert.equal(mk.code, 0, mk.stderr);
    assert.ok((await stat(join(a.root, 'made/a/b'))).isDirectory());
    await writeFile(join(a.root, 'made/a/b/f.txt'), 'f');

    const [file, dirNoR] = await Promise.all([
      cli(['rm', a.remote('made/a/b/f.txt')], env),
      cli(['rm', a.remote('made/c')], env),
    ]);
    assert.equal(file.code, 0, file.stderr);
    await assert.rejects(stat(join(a.root, 'made/a/b/f.txt')), { code: 'ENOENT' });
    assert.equal(dirNoR.code, 1);
    assert.match(dirNoR.stderr, /made\/c is a directory; pass -r to delete it with its contents/);
    assert.ok((await stat(join(a.root, 'made/c'))).isDirectory(), 'left in place');

    const [rr, again, forced] = await Promise.all([
      cli(['rm', '-r', a.remote('made')], env),
      cli(['rm', a.remote('never-there')], env),
      cli(['rm', '-f', a.remote('never-there')], env),
    ]);
    assert.equal(rr.code, 0, rr.stderr);
    await assert.rejects(stat(join(a.root, 'made')), { code: 'ENOENT' });
    assert.equal(again.code, 3);
    assert.match(again.stderr, /NotFound: .*never-there/);
    assert.equal(forced.code, 0, forced.stderr);
  });
});

/** Like cli() but keeps stdout as bytes. */
async function runBinary(
  args: string[],
  e: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: Buffer }> {
  const child = spawnCli(args, e);
  child.stdin!.end();
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  child.stderr!.resume();
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  return { code, stdout: Buffer.concat(chunks) };
}
