/**
 * What a directory upload asks of the agent, checked against a fake channel
 * that records every request: one CreateDirectory for the target, one for
 * each empty directory, exactly one WriteAllBytes per small file (verify
 * off) and nothing else; the window of `concurrency` requests is kept full,
 * and empty directories share it with the files instead of running first.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Channel } from '../../src/client/channel.js';
import { ClientContext } from '../../src/client/context.js';
import { RemotePaths } from '../../src/client/paths.js';
import { upload } from '../../src/client/transfer.js';

const made: string[] = [];
after(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});

interface Recorded {
  name: string;
  path: string;
  size?: number;
}

/** A channel that answers every request after a turn of the event loop, recording it. */
function fakeChannel() {
  const requests: Recorded[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  /** In-flight requests of each kind at the moment each WriteAllBytes started. */
  const concurrentDirsAtFirstWrite: number[] = [];
  let dirsInFlight = 0;
  const channel = {
    agentMaxMessageSize: 4 * 1024 * 1024,
    async request(_agentType: number, name: string, args: Record<string, unknown>) {
      const path = String(args.path);
      const rec: Recorded = { name, path };
      if (args.contents instanceof Uint8Array) rec.size = args.contents.length;
      requests.push(rec);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (name === 'CreateDirectory') dirsInFlight++;
      if (name === 'WriteAllBytes' && concurrentDirsAtFirstWrite.length === 0)
        concurrentDirsAtFirstWrite.push(dirsInFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      if (name === 'CreateDirectory') dirsInFlight--;
      return {};
    },
  };
  return {
    channel: channel as unknown as Channel,
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    concurrentDirsAtFirstWrite,
  };
}

describe('upload() of a directory: requests', () => {
  it('one WriteAllBytes per small file, CreateDirectory only for the target and empty directories', async () => {
    const src = await mkdtemp(join(tmpdir(), 'outpost-up-'));
    made.push(src);
    const files: string[] = [];
    for (let d = 0; d < 5; d++) {
      await mkdir(join(src, `d${d}`, 'inner'), { recursive: true });
      for (let i = 0; i < 40; i++) {
        const rel = `d${d}/${i % 2 ? 'inner/' : ''}f${i}.txt`;
        await writeFile(join(src, rel), `file ${d}/${i}`);
        files.push(rel);
      }
    }
    await mkdir(join(src, 'empty', 'deeper'), { recursive: true });
    await mkdir(join(src, 'also-empty'));
    await symlink('d0/f0.txt', join(src, 'link'));
    await writeFile(join(src, `.leftover.abc${'.outpost-tmp'}`), 'a temp file of an earlier run');

    const fake = fakeChannel();
    const ctx = new ClientContext(fake.channel, 1, new RemotePaths('/'));
    const result = await upload(ctx, src, '/remote', { concurrency: 16, verify: false });

    assert.equal(result.files, files.length);
    assert.deepEqual(result.skipped, ['link']);
    const byName = (n: string) => fake.requests.filter((r) => r.name === n);
    assert.deepEqual(
      fake.requests.map((r) => r.name).filter((n) => n !== 'CreateDirectory' && n !== 'WriteAllBytes'),
      [],
      'no other requests (no stat, exists or hash)',
    );
    assert.deepEqual(
      byName('CreateDirectory').map((r) => r.path),
      ['/remote', '/remote/also-empty', '/remote/empty/deeper'],
    );
    assert.equal(fake.requests[0]!.path, '/remote', 'the target first');
    const writes = byName('WriteAllBytes');
    assert.deepEqual(writes.map((r) => r.path).sort(), files.map((f) => `/remote/${f}`).sort());
    assert.equal(new Set(writes.map((r) => r.path)).size, writes.length, 'each file once');
    assert.equal(fake.maxInFlight, 16, 'the window is kept full');
    assert.ok(fake.concurrentDirsAtFirstWrite[0]! > 0, 'empty directories share the window with files');
  });
});
