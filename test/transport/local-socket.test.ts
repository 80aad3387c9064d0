/**
 * Owner-only local sockets: permissions, stale-socket replacement, a live
 * socket refused, JSON lines with the bytes after them kept for the caller.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connectLocal, listenLocal, readJsonLine, writeJsonLine } from '../../src/transport/local-socket.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'outpost-local-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('local sockets', () => {
  it('listens owner-only, answers a JSON line and keeps the raw bytes after it', async () => {
    const dir = join(await tempDir(), 'run');
    const path = join(dir, 'control.sock');
    const server = await listenLocal(path, async (s) => {
      const req = await readJsonLine<{ op: string }>(s);
      writeJsonLine(s, { ok: true, op: req.op });
      s.once('data', (rest) => s.end(Buffer.concat([Buffer.from('raw:'), rest])));
    });
    try {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      const c = await connectLocal(path);
      c.write('{"op":"status"}\nafter');
      assert.deepEqual(await readJsonLine(c), { ok: true, op: 'status' });
      const chunks: Buffer[] = [];
      for await (const chunk of c) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'raw:after');
    } finally {
      server.close();
    }
  });

  it('refuses a live socket or a non-socket, and listens again after a close', async () => {
    const dir = await tempDir();
    const path = join(dir, 'a.sock');
    const first = await listenLocal(path, (s) => s.end());
    await assert.rejects(
      listenLocal(path, (s) => s.end()),
      /already listening/,
    );
    first.close();
    await new Promise((r) => setTimeout(r, 50));
    const second = await listenLocal(path, (s) => s.end());
    second.close();
    const notSock = join(dir, 'b.sock');
    await writeFile(notSock, 'x');
    await assert.rejects(
      listenLocal(notSock, (s) => s.end()),
      /not a socket/,
    );
  });

  it('refuses a directory others can write, and names the fix', async () => {
    const dir = join(await tempDir(), 'open');
    await mkdir(dir);
    await chmod(dir, 0o777);
    await assert.rejects(
      listenLocal(join(dir, 's.sock'), (s) => s.end()),
      /chmod 700/,
    );
  });

  it('connectLocal says nothing is listening', async () => {
    const dir = await tempDir();
    await assert.rejects(connectLocal(join(dir, 'none.sock')), /nothing is listening/);
  });

  it('readJsonLine refuses bad JSON and an over-long line', async () => {
    const dir = await tempDir();
    const path = join(dir, 'j.sock');
    const results: string[] = [];
    const server = await listenLocal(path, (s) => {
      readJsonLine(s, 16).then(
        () => results.push('ok'),
        (e: Error) => {
          results.push(e.message);
          s.destroy();
        },
      );
    });
    try {
      for (const text of ['{bad json}\n', `${'x'.repeat(40)}\n`]) {
        const c = await connectLocal(path);
        c.write(text);
        await new Promise((r) => c.once('close', r));
      }
      assert.match(results[0] ?? '', /not valid JSON/);
      assert.match(results[1] ?? '', /passed 16 bytes/);
    } finally {
      server.close();
    }
  });
});
