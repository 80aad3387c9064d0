/**
 * ExecuteJob in the host, driven through the dispatcher in-process: the
 * example extension packed by its own script and loaded from the
 * instance's extension folder (each job in a worker thread), log events
 * before the result, Unsupported/Internal/Canceled, a cancel that kills the
 * job's process tree (also when the job ignores its signal), and the next
 * job after an update seeing the new version.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AgentType,
  decodeEventBody,
  decodeReply,
  decodeResult,
  EVENT_ROUTE,
  EventCode,
  encodeProductRequest,
  type Reply,
} from '../../src/protocol/index.js';
import { packExtension, packVariant } from '../helpers/upack.js';
import { cleanup, type RecordingChannel, tempDir, tempHost } from './helpers.js';

const ROUTE = 7;

/** Running (a zombie, which runs nothing, counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('ExecuteJob in the host', () => {
  let extDir: string;
  let host: Awaited<ReturnType<typeof tempHost>>;
  let work: string;

  before(async () => {
    work = await tempDir();
    extDir = join(work, 'Otter', 'extensions');
    await mkdir(extDir, { recursive: true });
    await packExtension(join(extDir, 'example.upack'));
    host = await tempHost({ extensionPath: extDir }, {}, { jobCancelGraceMs: 300 });
  });
  after(cleanup);

  /** Sends ExecuteJob on ROUTE and waits for its Response or Error; returns everything for the token. */
  async function run(token: number, jobType: string, payload: object | string = {}) {
    const channel = host.channel as RecordingChannel;
    const start = channel.sent.length;
    const bytes = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    host.svc.handle(
      ROUTE,
      encodeProductRequest(AgentType.Otter, 'ExecuteJob', token, { jobType, payload: bytes }),
    );
    const mine = () =>
      channel.sent
        .slice(start)
        .map((m) => ({ route: m.route, reply: decodeReply(m.message) }))
        .filter((m) => 'token' in m.reply && m.reply.token === token);
    await channel.until(() => mine().some((m) => m.reply.kind !== 'event'), 20_000);
    return mine();
  }

  function finalOf(msgs: { reply: Reply }[]): Reply {
    return msgs.at(-1)!.reply;
  }

  it('runs an extension job: Log events on the event route, in order, then the Response', async () => {
    const msgs = await run(1, 'example.hello', { name: 'outpost', lines: 3 });
    const events = msgs.filter((m) => m.reply.kind === 'event');
    assert.ok(events.every((m) => m.route === EVENT_ROUTE));
    const logs = events
      .filter((m) => m.reply.kind === 'event' && m.reply.event === EventCode.Log)
      .map((m) => decodeEventBody('Log', (m.reply as { body: Buffer }).body));
    assert.deepEqual(
      logs.filter((l) => l.level === 1).map((l) => l.text),
      ['line 1 of 3', 'line 2 of 3', 'line 3 of 3'],
    );
    const last = finalOf(msgs);
    assert.equal(last.kind, 'response');
    const { result } = decodeResult('ExecuteJob', (last as { body: Buffer }).body);
    assert.equal(Buffer.from(result).toString(), 'hello, outpost');
  });

  it('answers an unknown type Unsupported, naming it, what is installed, and what is broken', async () => {
    await writeFile(join(extDir, 'broken.upack'), 'not a zip');
    const last = finalOf(await run(2, 'nope.missing'));
    assert.equal(last.kind, 'error');
    assert.equal((last as { errorKind: string }).errorKind, 'Unsupported');
    const msg = (last as { message: string }).message;
    assert.match(msg, /"nope\.missing"/);
    assert.match(msg, /example\.hello/);
    assert.match(msg, /outpost-example 1\.0\.0/);
    assert.match(msg, /outpost\.manifest \(built in\)/);
    assert.match(msg, /broken\.upack: broken/);
    await unlink(join(extDir, 'broken.upack'));
  });

  it('a job that throws is Internal with its message', async () => {
    const last = finalOf(await run(3, 'example.fail'));
    assert.equal((last as { errorKind: string }).errorKind, 'Internal');
    assert.match((last as { message: string }).message, /failed on purpose/);
  });

  for (const stubborn of [false, true]) {
    it(`Cancel ends the job with Canceled and kills its child (${stubborn ? 'job ignores the signal: stopped by force' : 'job stops'})`, async () => {
      const token = stubborn ? 11 : 10;
      const marker = `pid-${token}`;
      const channel = host.channel as RecordingChannel;
      const start = channel.sent.length;
      host.svc.handle(
        ROUTE,
        encodeProductRequest(AgentType.Otter, 'ExecuteJob', token, {
          jobType: 'example.wait',
          payload: Buffer.from(JSON.stringify({ stubborn, marker })),
        }),
      );
      const markerPath = join(host.dir, marker);
      await waitFor(async () => (await readFile(markerPath, 'utf8').catch(() => '')) !== '');
      const pid = Number(await readFile(markerPath, 'utf8'));
      assert.ok(alive(pid), 'the child runs');
      host.svc.handle(ROUTE, encodeProductRequest(AgentType.Otter, 'Cancel', 99, { targetToken: token }));
      await channel.until(() =>
        channel.sent.slice(start).some((m) => {
          const r = decodeReply(m.message);
          return r.kind === 'error' && r.token === token;
        }),
      );
      const err = channel.sent
        .slice(start)
        .map((m) => decodeReply(m.message))
        .find((r) => r.kind === 'error' && r.token === token) as { errorKind: string; message: string };
      assert.equal(err.errorKind, 'Canceled');
      if (stubborn) assert.match(err.message, /stopped by force/);
      await waitFor(() => !alive(pid), 5000);
      assert.equal(host.svc.jobs.count, 0);
    });
  }

  it('the next job after an update sees the new version', async () => {
    const v2 = join(work, 'v2.upack');
    await packVariant(join(work, 'v2src'), v2, '2.0.0', 'hi');
    // As UpdateAgent stores it: a temp file renamed over the old one.
    await rename(v2, join(extDir, 'example.upack'));
    const last = finalOf(await run(20, 'example.hello', { name: 'v2' }));
    assert.equal(
      Buffer.from(decodeResult('ExecuteJob', (last as { body: Buffer }).body).result).toString(),
      'hi, v2',
    );
  });
});
