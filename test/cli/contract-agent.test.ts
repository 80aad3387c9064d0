/**
 * The CLI against an independent agent written from the contract alone
 * (test/client/contract-agent.ts, mode none, no Outpost extensions): info
 * shows the contract's AgentInfo and the handshake version as a.b.c.d; ls -l
 * and --json use fullPath, isDirectory and mode; rm works with DeleteFile;
 * a command the agent lacks is one line and exit 3.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ContractAgent, fileEntry, Out } from '../client/contract-agent.js';
import { cli, oneLineError } from './helpers.js';

const MTIME = Date.UTC(2024, 4, 1, 12, 0, 0);
const ENTRIES = [
  { fullPath: '/srv/app/bin', isDirectory: true, size: 0, mtimeMs: MTIME, mode: 0o040755 },
  { fullPath: '/srv/app/bin/run', isDirectory: false, size: 12, mtimeMs: MTIME, mode: 0o100755 },
  { fullPath: '/srv/app/link', isDirectory: false, size: 3, mtimeMs: MTIME, mode: 0o120777 },
  { fullPath: '/srv/app/readme', isDirectory: false, size: 5, mtimeMs: MTIME, mode: 0o100644 },
];

describe('CLI against a contract-only agent', () => {
  let agent: ContractAgent;
  let target: string;
  const deleted: string[] = [];
  before(async () => {
    agent = await new ContractAgent({
      version: (2 << 24) | (5 << 16) | (0 << 8) | 7,
      handlers: {
        // GetFileInfo: string path → nullable<FileEntry>
        4: (args, reply) => {
          const path = args.string();
          const e =
            path === '/srv/app'
              ? { fullPath: '/srv/app', isDirectory: true, size: 0, mtimeMs: MTIME, mode: 0o040755 }
              : ENTRIES.find((x) => x.fullPath === path);
          const out = new Out().bool(e !== undefined);
          if (e) fileEntry(out, e);
          reply.response(out.done());
        },
        // ListDirectory: path, recursive, include, exclude → array<FileEntry>
        5: (args, reply) => {
          const path = args.string();
          const recursive = args.bool();
          const listed = ENTRIES.filter(
            (e) =>
              e.fullPath.startsWith(`${path}/`) &&
              (recursive || !e.fullPath.slice(path.length + 1).includes('/')),
          );
          const out = new Out().i32(listed.length);
          for (const e of listed) fileEntry(out, e);
          reply.response(out.done());
        },
        // DeleteFile: string path
        7: (args, reply) => {
          deleted.push(args.string());
          reply.response();
        },
      },
    }).start();
    target = `127.0.0.1:${agent.port}`;
  });
  after(() => agent?.stop());

  it('info shows the contract AgentInfo and the handshake version', async () => {
    const [text, json] = await Promise.all([
      cli(['info', target, '--mode', 'none']),
      cli(['info', target, '--mode', 'none', '--json']),
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^product: +ContractAgent$/m);
    assert.match(text.stdout, /^version: +9\.8\.7 \(handshake 2\.5\.0\.7\)$/m);
    assert.match(text.stdout, /^hostname: +fake-host$/m);
    assert.match(text.stdout, /^process: +4242$/m);
    const info = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(info.handshakeVersion, '2.5.0.7');
    assert.equal(info.osRelease, '6.0');
    assert.equal(info.encryptionMode, 'none');
    assert.equal(info.rootPath, '/srv/contract/2');
  });

  it('ls -l and --json show type and permissions from the mode, names from fullPath', async () => {
    const [long, json] = await Promise.all([
      cli(['ls', '-l', `${target}:/srv/app`, '--mode', 'none']),
      cli(['ls', '-r', '--json', `${target}:/srv/app`, '--mode', 'none']),
    ]);
    assert.equal(long.code, 0, long.stderr);
    const lines = long.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^drwxr-xr-x +0 +\S+ \S+ +bin\/$/);
    assert.match(lines[1]!, /^lrwxrwxrwx +3 +\S+ \S+ +link$/);
    assert.match(lines[2]!, /^-rw-r--r-- +5 +\S+ \S+ +readme$/);
    const entries = JSON.parse(json.stdout) as { name: string; type: string; fullPath: string }[];
    assert.deepEqual(
      entries.map((e) => `${e.type}:${e.name}`),
      ['directory:bin', 'file:bin/run', 'symlink:link', 'file:readme'],
    );
    assert.equal(entries[1]!.fullPath, '/srv/app/bin/run');
  });

  it('rm deletes with DeleteFile; a missing path is a one-line remote error', async () => {
    const ok = await cli(['rm', `${target}:/srv/app/readme`, `${target}:/srv/app/bin/run`, '--mode', 'none']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(deleted, ['/srv/app/readme', '/srv/app/bin/run']);
    const missing = await cli(['rm', `${target}:/srv/nope`, '--mode', 'none']);
    assert.equal(missing.code, 3);
    assert.match(oneLineError(missing), /NotFound/);
  });

  it('a command the agent does not implement is exit 3 with the reason', async () => {
    const r = await cli(['cat', `${target}:/srv/app/readme`, '--mode', 'none']);
    assert.equal(r.code, 3);
    assert.match(oneLineError(r), /Unsupported/);
  });
});
