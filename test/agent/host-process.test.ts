/**
 * The agent's side of a product host: a real host child process driven over
 * its pipe (PipeConnection; Init, Ping and Shutdown control messages; wire
 * messages by route), including its death, its going silent, and a death
 * while the agent waits for the pipe to drain.
 */
import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HostLimitError, HostPool } from '../../src/agent/host-pool.js';
import { HostProcess } from '../../src/agent/host-process.js';
import {
  AgentType,
  decodeEventBody,
  decodeReply,
  decodeResult,
  ErrorKind,
  EVENT_ROUTE,
  encodeProductRequest,
  type HostSettings,
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
    agentType: AgentType.Otter,
    rootPath: dir,
    baseDirectory: dir,
    allowedRoots: [dir],
    maxMessageSize: 1 << 20,
    maxOpenFiles: 16,
    maxProcesses: 4,
    extensionPath: null,
  };
}

const tokenOf = (r: Reply): number => ('token' in r ? r.token : Number.NaN);

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
        encodeProductRequest(AgentType.Otter, 'WriteAllBytes', 100, {
          path: 'a.txt',
          contents: Buffer.from('hi'),
          lastWriteUtc: null,
          mode: null,
        }),
      );
      host.send(9, encodeProductRequest(AgentType.Otter, 'FileExists', 101, { path: join(dir, 'missing') }));
      await until(() => replies.length >= 2);
      const byToken = new Map(replies.map((r) => [tokenOf(r.reply), r]));
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
        encodeProductRequest(AgentType.Otter, 'StartProcess', 55, {
          fileName: 'sh',
          args: ['-c', 'echo out; echo err >&2; exit 3'],
          workingDirectory: null,
          environment: {},
          flags: 0,
        }),
      );
      await until(() => replies.some((r) => r.reply.kind === 'event' && r.reply.event === 3));
      assert.equal(replies[0]!.reply.kind, 'response');
      assert.equal(replies[0]!.route, 3);
      const events = replies.slice(1);
      assert.ok(
        events.every((e) => e.route === EVENT_ROUTE && e.reply.kind === 'event' && e.reply.token === 55),
      );
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
      // FileExists whose string claims 200 bytes and has 3.
      const bad = Buffer.from([AgentType.Otter, 2, 0, 0, 0, 1, 0, 0, 0, 200, 1, 2, 3]);
      host.send(1, bad);
      host.send(1, encodeProductRequest(AgentType.Otter, 'DirectoryExists', 2, { path: dir }));
      await until(() => replies.length >= 2);
      const first = replies.find((r) => tokenOf(r.reply) === 1)!.reply;
      assert.equal(first.kind, 'error');
      if (first.kind === 'error') assert.equal(first.errorKind, ErrorKind.InvalidArgument);
      const second = replies.find((r) => tokenOf(r.reply) === 2)!.reply;
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

  test('a host that dies while the agent waits for its pipe to drain releases the wait (issue 18, item 1)', async () => {
    const { host, until, exit } = startHost();
    await until(() => host.isReady, 20000);
    // Stop the host so it reads nothing, and fill the pipe until it pushes back.
    process.kill(host.pid!, 'SIGSTOP');
    const chunk = Buffer.alloc(256 * 1024);
    let full = false;
    for (let i = 0; i < 4096 && !full; i++)
      full = !host.send(
        1,
        encodeProductRequest(AgentType.Otter, 'WriteAllBytes', i + 1, {
          path: 'x',
          contents: chunk,
          lastWriteUtc: null,
          mode: null,
        }),
      );
    assert.ok(full, 'the pipe pushed back');
    let released = false;
    const wait = host.whenWritable().then(() => {
      released = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(released, false, 'nothing drains while the host is stopped');
    process.kill(host.pid!, 'SIGKILL');
    await until(() => exit() !== null);
    await wait;
    assert.equal(released, true, 'the wait ended with the host');
    assert.equal(host.send(1, Buffer.alloc(5)), true, 'sending to a dead host never blocks');
  });

  test('a host killed in the middle of a whole-file write leaves no temp file (issue 18)', async () => {
    const target = join(dir, 'killed-mid-write', 'big.bin');
    const parent = join(dir, 'killed-mid-write');
    await mkdir(parent);
    await writeFile(target, 'old');
    // Rounds until the kill lands before the rename (a fast disk may finish 32 MiB first).
    let midway = false;
    for (let round = 0; round < 3 && !midway; round++) {
      const { host, until, exit } = startHost();
      await until(() => host.isReady, 20000);
      const seen = new Promise<void>((resolve) => {
        const watcher = watch(parent, (_e, name) => {
          if (name?.endsWith('.tmp')) {
            process.kill(host.pid!, 'SIGKILL');
            watcher.close();
            resolve();
          }
        });
      });
      host.send(
        1,
        encodeProductRequest(AgentType.Otter, 'WriteAllBytes', 1, {
          path: target,
          contents: Buffer.alloc(32 << 20, 7),
          lastWriteUtc: null,
          mode: null,
        }),
      );
      await seen;
      await until(() => exit() !== null);
      midway = (await readFile(target, 'utf8').catch(() => '')) === 'old';
      // The pipe's last frames are read within a second of the exit.
      await until(() => host.tempFiles.length === 0, 5000);
      assert.deepEqual(await readdir(parent), ['big.bin'], 'only the target is left');
    }
    assert.ok(midway, 'a kill landed before the rename');
  });

  test('shutdown terminates running processes and exits', async () => {
    const { host, replies, until, exit } = startHost();
    host.send(
      1,
      encodeProductRequest(AgentType.Otter, 'StartProcess', 9, {
        fileName: 'sleep',
        args: ['30'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await until(() => replies.length >= 1);
    const r = replies[0]!.reply;
    assert.equal(r.kind, 'response');
    const pid = r.kind === 'response' ? decodeResult('StartProcess', r.body).osProcessId : 0;
    await host.shutdown();
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
      second.send(7, encodeProductRequest(AgentType.Otter, 'FileExists', 1, { path: join(dir, 'none') }));
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

  test('a host that held nothing at its session end becomes the spare with its state dropped; one that held something is stopped', async () => {
    const pool = new HostPool({ spares: 1 });
    const mailbox = () => {
      const replies: Reply[] = [];
      return {
        replies,
        handlers: {
          onMessage: (_r: number, m: Buffer) => replies.push(decodeReply(Buffer.from(m))),
          onExit() {},
        },
      };
    };
    const open = (host: HostProcess, token: number, name: string) =>
      host.send(
        7,
        encodeProductRequest(AgentType.Otter, 'OpenFile', token, {
          path: join(dir, name),
          fileMode: 4,
          access: 3,
        }),
      );
    try {
      const a = mailbox();
      const first = pool.take({ ...settings(), firstHandle: 1 }, a.handlers);
      first.busy(1);
      open(first, 1, 'recycle-1');
      await until(() => a.replies.length === 1);
      first.busy(-1);
      const h1 = decodeResult('OpenFile', (a.replies[0] as Reply & { kind: 'response' }).body).handle;
      assert.equal(h1, 1);
      first.send(7, encodeProductRequest(AgentType.Otter, 'CloseFile', 2, { handle: h1 }));
      await until(() => a.replies.length === 2 && !first.holdsHandles);
      await pool.release(first, true);
      assert.equal(pool.hasSpare, true, 'at once: no boot');
      assert.ok(first.alive, 'the same process');
      assert.equal(first.recycled, 1);

      // The next session gets that process, with its own settings: a fresh dispatcher.
      const b = mailbox();
      const second = pool.take({ ...settings(), firstHandle: 5000 }, b.handlers);
      assert.equal(second.pid, first.pid, 'the recycled host is the one taken');
      assert.equal(a.replies.length, 2, 'nothing more reaches the first session');
      open(second, 1, 'recycle-2');
      await until(() => b.replies.length === 1);
      const reply = b.replies[0]!;
      assert.equal(reply.kind, 'response', JSON.stringify(reply));
      assert.equal(decodeResult('OpenFile', (reply as Reply & { kind: 'response' }).body).handle, 5000);
      await until(() => second.holdsHandles);

      // Holding a handle at the end: not reused, shut down; the spare follows it.
      let exited = false;
      await pool.release(second, false);
      exited = !second.alive;
      assert.ok(exited, 'a host that held something is stopped');
      assert.equal(pool.hasSpare, false);
      await until(() => pool.hasSpare);
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

  test('the bound counts the spare; at it a busy pool refuses, an idle host is stopped for room', async () => {
    const pool = new HostPool({ spares: 1, maxHosts: 1, idleMs: 600_000 });
    try {
      let firstExited = false;
      const first = pool.take(settings(), { onMessage() {}, onExit: () => (firstExited = true) });
      assert.equal(pool.size, 1);
      assert.throws(() => pool.take(settings(), { onMessage() {}, onExit() {} }), HostLimitError);
      await first.shutdown(2000);
      await until(() => firstExited && pool.hasSpare);
      assert.equal(pool.size, 1, 'the spare counts');
      const second = pool.take(settings(), { onMessage() {}, onExit() {} });
      assert.equal(pool.size, 1, 'taking the spare starts nothing');
      let stopped = 0;
      pool.setIdle(second, () => {
        stopped++;
        void second.shutdown(2000);
      });
      const third = pool.take(settings(), { onMessage() {}, onExit() {} });
      assert.equal(stopped, 1, 'the idle host made room');
      assert.equal(pool.size, 1);
      assert.throws(
        () => pool.take(settings(), { onMessage() {}, onExit() {} }),
        (e: unknown) => e instanceof HostLimitError && /MaxHostProcesses/.test(e.message),
      );
      await third.shutdown(2000);
    } finally {
      await pool.close();
    }
  });

  test('an idle host is stopped after idleMs unless it is busy again', async () => {
    const pool = new HostPool({ spares: 0, idleMs: 200 });
    try {
      const h = pool.take(settings(), { onMessage() {}, onExit() {} });
      let stopped = false;
      pool.setIdle(h, () => (stopped = true));
      pool.setIdle(h, null);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(stopped, false, 'busy again before its time: kept');
      pool.setIdle(h, () => (stopped = true));
      await until(() => stopped);
      assert.equal(pool.size, 0, 'a stopped host no longer counts');
      await h.shutdown(2000);
    } finally {
      await pool.close();
    }
  });
});
