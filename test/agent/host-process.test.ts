/**
 * The agent's side of a product host: a real host child process driven over
 * its pipe, including its death and its going silent.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HostPool, HostProcess, type HostSettings } from '../../src/agent/host-process.js';
import {
  decodeEventBody,
  decodeReply,
  decodeResult,
  ErrorKind,
  encodeRequest,
  type Reply,
} from '../../src/protocol/index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'outpost-host-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function settings(): HostSettings {
  return {
    rootPath: dir,
    baseDirectory: dir,
    allowedRoots: [dir],
    maxMessageSize: 1 << 20,
    maxOpenFiles: 16,
    maxProcesses: 4,
  };
}

/** A host plus a mailbox of decoded replies by route. */
function startHost(extra: { heartbeatMs?: number; heartbeatTimeoutMs?: number } = {}) {
  const replies: { route: number; reply: Reply }[] = [];
  const waiters: (() => void)[] = [];
  let exitReason: string | null = null;
  const host = new HostProcess({
    settings: settings(),
    ...extra,
    onMessage(route, message) {
      replies.push({ route, reply: decodeReply(Buffer.from(message)) });
      for (const w of waiters.splice(0)) w();
    },
    onExit(reason) {
      exitReason = reason;
      for (const w of waiters.splice(0)) w();
    },
  });
  const until = async (pred: () => boolean, ms = 10000) => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  };
  return { host, replies, until, exit: () => exitReason };
}

describe('host process', () => {
  test('answers file requests on the route that asked', async () => {
    const { host, replies, until } = startHost();
    try {
      host.send(
        7,
        encodeRequest(1, 100, 'WriteAllBytes', {
          path: 'a.txt',
          data: Buffer.from('hi'),
          mode: null,
          lastWriteTime: null,
        }),
      );
      host.send(9, encodeRequest(1, 101, 'FileExists', { path: join(dir, 'missing') }));
      await until(() => replies.length >= 2);
      const byToken = new Map(replies.map((r) => [r.reply.token, r]));
      assert.equal(byToken.get(100)?.route, 7);
      assert.equal(byToken.get(100)?.reply.kind, 'response');
      const exists = byToken.get(101)!;
      assert.equal(exists.route, 9);
      assert.equal(exists.reply.kind, 'response');
      if (exists.reply.kind === 'response')
        assert.deepEqual(decodeResult('FileExists', exists.reply.body), { exists: false });
      assert.equal(await readFile(join(dir, 'a.txt'), 'utf8'), 'hi');
    } finally {
      await host.shutdown();
    }
  });

  test('a process: Response with pid first, events on route 0, Exited last', async () => {
    const { host, replies, until } = startHost();
    try {
      host.send(
        3,
        encodeRequest(2, 55, 'StartProcess', {
          fileName: 'sh',
          arguments: ['-c', 'echo out; echo err >&2; exit 3'],
          workingDirectory: null,
          environment: {},
          flags: 0,
        }),
      );
      await until(() => replies.some((r) => r.reply.kind === 'event' && r.reply.event === 3));
      assert.equal(replies[0]!.reply.kind, 'response');
      assert.equal(replies[0]!.route, 3);
      const events = replies.slice(1);
      assert.ok(events.every((e) => e.route === 0 && e.reply.kind === 'event' && e.reply.token === 55));
      const last = events.at(-1)!.reply;
      assert.ok(last.kind === 'event');
      if (last.kind === 'event')
        assert.deepEqual(decodeEventBody('Exited', last.body), { exitCode: 3, signal: null });
    } finally {
      await host.shutdown();
    }
  });

  test('malformed arguments get InvalidArgument and the host keeps serving', async () => {
    const { host, replies, until } = startHost();
    try {
      const bad = Buffer.concat([encodeRequest(1, 1, 'FileExists', { path: 'x' }), Buffer.from([1, 2, 3])]);
      host.send(1, bad);
      host.send(1, encodeRequest(1, 2, 'DirectoryExists', { path: dir }));
      await until(() => replies.length >= 2);
      const first = replies.find((r) => r.reply.token === 1)!.reply;
      assert.equal(first.kind, 'error');
      if (first.kind === 'error') assert.equal(first.errorKind, ErrorKind.InvalidArgument);
      const second = replies.find((r) => r.reply.token === 2)!.reply;
      assert.equal(second.kind, 'response');
    } finally {
      await host.shutdown();
    }
  });

  test('SIGKILL of the host is reported through onExit', async () => {
    const { host, until, exit } = startHost();
    process.kill(host.pid!, 'SIGKILL');
    await until(() => exit() !== null);
    assert.match(exit()!, /SIGKILL/);
    assert.equal(host.alive, false);
  });

  test('a host that stops answering is killed by the liveness probe', async () => {
    const { host, until, exit } = startHost({ heartbeatMs: 100, heartbeatTimeoutMs: 400 });
    host.busy(1);
    await until(() => host.isReady, 20000);
    process.kill(host.pid!, 'SIGSTOP');
    await until(() => exit() !== null, 5000);
    assert.match(exit()!, /stopped answering/);
  });

  test('shutdown terminates running processes and exits', async () => {
    const { host, replies, until, exit } = startHost();
    host.send(
      1,
      encodeRequest(1, 9, 'StartProcess', {
        fileName: 'sleep',
        arguments: ['30'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await until(() => replies.length >= 1);
    const r = replies[0]!.reply;
    assert.equal(r.kind, 'response');
    const pid = r.kind === 'response' ? decodeResult('StartProcess', r.body).pid : 0;
    const t0 = Date.now();
    await host.shutdown();
    assert.ok(Date.now() - t0 < 6000);
    assert.ok(exit() !== null);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });
});

describe('spare host pool', () => {
  const until = async (pred: () => boolean, ms = 15000) => {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  test('no spare until a session host ends; then one, taken by the next session; retired when unused', async () => {
    const pool = new HostPool({ spares: 1, spareIdleMs: 1500 });
    try {
      assert.equal(pool.hasSpare, false, 'no spare at start');
      let exited = false;
      const first = pool.take(settings(), { onMessage() {}, onExit: () => (exited = true) });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(pool.hasSpare, false, 'no spare booted beside a session that just started');
      await first.shutdown(2000);
      await until(() => exited);
      await until(() => pool.hasSpare);
      // The next session takes the spare (no new boot), and no spare follows until it ends.
      const replies: Buffer[] = [];
      const second = pool.take(settings(), {
        onMessage: (_r, m) => replies.push(Buffer.from(m)),
        onExit() {},
      });
      assert.equal(pool.hasSpare, false);
      second.send(7, encodeRequest(1, 1, 'FileExists', { path: join(dir, 'none') }));
      await until(() => replies.length > 0);
      const reply = decodeReply(replies[0]!);
      assert.equal(reply.kind, 'response');
      await second.shutdown(2000);
      await until(() => pool.hasSpare);
      // Untaken for spareIdleMs: retired, the agent goes back to its idle size.
      await until(() => !pool.hasSpare, 6000);
    } finally {
      await pool.close();
    }
  });

  test('spares: 0 never starts one', async () => {
    const pool = new HostPool({ spares: 0 });
    try {
      let exited = false;
      const h = pool.take(settings(), { onMessage() {}, onExit: () => (exited = true) });
      await h.shutdown(2000);
      await until(() => exited);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(pool.hasSpare, false);
    } finally {
      await pool.close();
    }
  });
});
