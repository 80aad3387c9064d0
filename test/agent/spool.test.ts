/**
 * Detached output spooled to disk (src/agent/spool.ts), end to end in
 * process: one real agent (startAgent with the host router: real host
 * processes, real child processes, real files), its in-memory tail made
 * tiny (16 KiB) so the spool file is used, MaxDetachedSpoolSize 2 MiB.
 * Three detached commands at once, each in its own session, writing
 * numbered lines: one writes 1 MiB and exits 3, and an attach after its
 * exit gets every byte in order and the code; one's session is ended
 * unattached and takes its spool file with it; one writes 6 MiB, is
 * paused at the bound while nobody attaches and finishes after the attach,
 * nothing lost. Spools of a dead run are removed at start. Then the Spool alone, against
 * a test connection (full every few messages, or closing mid-way): order
 * across memory, file and live messages; a write that fails keeps all.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { type AgentConfig, parseConfig, renderConfigXml } from '../../src/agent/config.js';
import { HostRouter } from '../../src/agent/host-router.js';
import { type AgentHandle, startAgent } from '../../src/agent/index.js';
import { Spool, type SpoolTarget, spoolFiles } from '../../src/agent/spool.js';
import { AgentClient } from '../../src/index.js';
import { tempDir } from '../helpers/agent.js';
import { sleep } from './e2e-helpers.js';

/** Polls an async condition (the agent answers over real sockets). */
async function until(pred: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(50);
  }
}

const MiB = 1024 * 1024;
const BOUND = 2 * MiB;
/** `lines` numbered lines of `length` bytes, written with the pipe's backpressure; a line on stderr first; exit 3. */
const WRITER = `
const [n, length] = process.argv.slice(1).map(Number);
process.stderr.write('begin\\n');
let i = 0;
const w = () => {
  while (i < n) {
    const ok = process.stdout.write(String(i++).padStart(8, '0') + '.'.repeat(length - 9) + '\\n');
    if (!ok) return void process.stdout.once('drain', w);
  }
  process.exitCode = 3;
};
w();`;
const expected = (n: number, length: number) =>
  Array.from({ length: n }, (_, i) => `${String(i).padStart(8, '0')}${'.'.repeat(length - 9)}\n`).join('');

let dir: string;
let agent: AgentHandle;
let router: HostRouter;
let configFor: (spoolBytes: number) => Promise<AgentConfig>;
const stale = () => join(dir, 'state', 'spool', 'run-2147483640-deadbeef');

before(async () => {
  dir = await tempDir('outpost-spool-');
  await mkdir(stale(), { recursive: true });
  await writeFile(join(stale(), 's1-t1-0-0.spool'), 'left by a run that died');
  configFor = (spoolBytes) =>
    parseConfig(
      renderConfigXml({
        mode: 'none',
        address: '127.0.0.1',
        port: 0,
        allowedRoots: [dir],
        extraXml: `<MaxDetachedSpoolSize>${spoolBytes}</MaxDetachedSpoolSize>`,
      }),
      join(dir, 'InedoAgent.config'),
    );
  const config = await configFor(BOUND);
  const logger = pino({ level: 'silent' });
  router = new HostRouter({ config, logger, spareHosts: 0, spoolMemoryBytes: 16 * 1024 });
  agent = await startAgent(config, logger, { router });
});
after(async () => {
  await agent?.close();
  await rm(dir, { recursive: true, force: true });
});

const connect = (sessionId?: number) =>
  AgentClient.connect({ host: '127.0.0.1', port: agent.port, ...(sessionId ? { sessionId } : {}) });

async function startDetached(lines: number, length: number): Promise<{ sessionId: number; token: number }> {
  const c = await connect();
  const d = await c.spawnDetached(process.execPath, ['-e', WRITER, String(lines), String(length)], {
    cwd: dir,
  });
  await c.close({ keepSession: true });
  return d;
}

/** The process as ListAgentProcesses shows it (undefined once its Exited was delivered). */
async function listed(sessionId: number, token: number) {
  const c = await connect();
  try {
    return (await c.agentProcesses()).find((p) => p.sessionId === sessionId && p.token === token);
  } finally {
    await c.close();
  }
}

/** Bytes in the spool files of a session (all sessions: 0). */
async function spoolBytes(sessionId = 0): Promise<number> {
  let n = 0;
  for (const f of await spoolFiles(router.spoolDir))
    if (sessionId === 0 || f.startsWith(`s${sessionId}-`)) n += (await stat(join(router.spoolDir, f))).size;
  return n;
}

async function attach(d: { sessionId: number; token: number }) {
  const c = await connect(d.sessionId);
  assert.equal(c.sessionId, d.sessionId, 'the session was kept');
  const proc = await c.attachProcess(d.token);
  const text = async (s: NodeJS.ReadableStream) => {
    const parts: Buffer[] = [];
    for await (const p of s) parts.push(p as Buffer);
    return Buffer.concat(parts).toString('latin1');
  };
  const [stdout, stderr, exit] = await Promise.all([text(proc.stdout), text(proc.stderr), proc.exited]);
  await c.close();
  return { stdout, stderr, exit };
}

describe('detached output spool', () => {
  it('a dead run’s spools are removed at start; nothing is created until needed; a file as the path stops the start', async () => {
    await assert.rejects(stat(stale()), { code: 'ENOENT' });
    await assert.rejects(stat(router.spoolDir), { code: 'ENOENT' });
    const notADir = join(dir, 'not-a-dir');
    await writeFile(notADir, '');
    const config = await parseConfig(
      renderConfigXml({
        mode: 'none',
        address: '127.0.0.1',
        extraXml: `<DetachedSpoolPath>${notADir}</DetachedSpoolPath>`,
      }),
      join(dir, 'InedoAgent.config'),
    );
    assert.throws(() => new HostRouter({ config, logger: pino({ level: 'silent' }), spareHosts: 0 }), {
      message: /^DetachedSpoolPath: .*not-a-dir cannot be used for spool files \(it is not a directory\)/,
    });
  });

  it('three at once: attach after the exit gets every byte and the code; an ended session takes its spool; at the bound one is paused, then finishes on attach', async () => {
    const [d, e, f] = await Promise.all([
      startDetached(16_384, 64), // 1 MiB: under the bound, it finishes unattached
      startDetached(4096, 64), // 256 KiB: its session is ended unattached
      startDetached(24_576, 256), // 6 MiB: paused at the bound
    ]);
    await until(
      async () =>
        (await listed(d.sessionId, d.token))?.running === false &&
        (await listed(e.sessionId, e.token))?.running === false &&
        (await spoolBytes(f.sessionId)) >= BOUND,
      60_000,
      'two exit unattached, the third spools up to its bound',
    );
    // Past the 16 KiB memory tail: on disk, private.
    assert.ok((await spoolBytes(d.sessionId)) >= MiB, `spooled ${await spoolBytes(d.sessionId)} bytes`);
    assert.equal((await spoolFiles(router.spoolDir)).length, 3);
    assert.equal((await stat(router.spoolDir)).mode & 0o777, 0o700);
    for (const name of await spoolFiles(router.spoolDir))
      assert.equal((await stat(join(router.spoolDir, name))).mode & 0o777, 0o600);
    // Pipes hold far less than the 4 MiB it has still to write: it cannot finish while paused.
    await sleep(500);
    assert.equal((await listed(f.sessionId, f.token))?.running, true, 'still running: paused at its pipe');
    const held = await spoolBytes(f.sessionId);
    assert.ok(held < BOUND + MiB, `bounded: ${held} bytes on disk`);

    const ending = connect(e.sessionId).then((c) => c.close()); // CloseSession
    const [rd, rf] = await Promise.all([attach(d), attach(f), ending]);
    assert.equal(rd.exit.code, 3);
    assert.equal(rd.stderr, 'begin\n');
    assert.equal(rd.stdout.length, MiB);
    assert.ok(rd.stdout === expected(16_384, 64), 'every line, in order');
    assert.equal(rf.exit.code, 3);
    assert.equal(rf.stdout.length, 6 * MiB);
    assert.ok(rf.stdout === expected(24_576, 256), 'paused, never dropped: every line, in order');
    await until(
      async () => (await spoolFiles(router.spoolDir)).length === 0,
      10_000,
      'the files are removed',
    );
    assert.equal(await listed(d.sessionId, d.token), undefined, 'delivered: the process is gone from ps');
  });

  it('MaxDetachedSpoolSize is applied by a reload', async () => {
    assert.deepEqual(agent.reload(await configFor(65_536)).applied, ['MaxDetachedSpoolSize']);
    assert.equal(agent.config.maxDetachedSpoolSize, 65_536);
    assert.deepEqual(agent.reload(await configFor(BOUND)).applied, ['MaxDetachedSpoolSize']);
  });
});

/** A connection stand-in: full after every `every` messages until a later tick; can close. */
class TestTarget implements SpoolTarget {
  readonly got: string[] = [];
  closed = false;
  #full = false;
  #waiting: (() => void)[] = [];
  /** `stall`: after that many messages it stays full (a connection that hangs). */
  constructor(
    private readonly every: number,
    private readonly stall = Number.POSITIVE_INFINITY,
  ) {}
  send(m: Buffer): boolean {
    assert.equal(this.closed, false, 'nothing is sent to a closed connection');
    this.got.push(m.toString());
    if (this.got.length >= this.stall) {
      this.#full = true;
      return false;
    }
    if (this.got.length % this.every !== 0) return true;
    this.#full = true;
    setImmediate(() => {
      this.#full = false;
      for (const cb of this.#waiting.splice(0)) cb();
    });
    return false;
  }
  onceDrain(cb: () => void): void {
    if (!this.#full || this.closed) cb();
    else this.#waiting.push(cb);
  }
  close(): void {
    this.closed = true;
    for (const cb of this.#waiting.splice(0)) cb();
  }
}

function testSpool(spoolDir: string, memoryBytes: number) {
  const state = { target: null as TestTarget | null, empty: 0, errors: [] as string[] };
  const spool = new Spool({
    dir: spoolDir,
    name: 'unit',
    memoryBytes,
    maxRecordBytes: 1 << 20,
    target: () => state.target,
    onEmpty: () => state.empty++,
    onChange: () => {},
    log: (_level, msg) => state.errors.push(msg),
  });
  return { spool, state };
}

const msg = (i: number) => Buffer.from(`message ${String(i).padStart(5, '0')} ${'x'.repeat(90)}`);
const texts = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => msg(from + i).toString());

describe('Spool', () => {
  it('memory, then file, then live messages while it is read back: all in order, once; the file goes', async () => {
    const d = join(dir, 'unit-order');
    const { spool, state } = testSpool(d, 1024);
    for (let i = 0; i < 300; i++) spool.append(msg(i));
    await until(async () => !spool.blocked, 5000, 'written');
    assert.ok(spool.file, 'past 1 KiB: a file');
    assert.ok(spool.bytes >= 300 * 100);
    const t = new TestTarget(7);
    state.target = t;
    spool.pump();
    // Live messages arrive while it is read back; once it is empty they go directly (as SessionHosts does).
    for (let i = 300; i < 400; i++) {
      if (state.empty === 0) spool.append(msg(i));
      else t.send(msg(i));
      if (i % 10 === 0) await sleep(1);
    }
    await until(async () => t.got.length === 400, 5000, 'all delivered');
    assert.deepEqual(t.got, texts(0, 400));
    assert.equal(state.empty, 1);
    assert.equal(spool.bytes, 0);
    await until(async () => (await spoolFiles(d)).length === 0, 5000, 'the file is removed');
    assert.deepEqual(state.errors, []);
  });

  it('a connection that closes mid-way leaves the rest for the next one, nothing lost or repeated', async () => {
    const d = join(dir, 'unit-drop');
    const { spool, state } = testSpool(d, 1024);
    for (let i = 0; i < 200; i++) spool.append(msg(i));
    await until(async () => !spool.blocked, 5000, 'written');
    const first = new TestTarget(5, 50);
    state.target = first;
    spool.pump();
    await until(async () => first.got.length === 50, 5000, 'some delivered');
    await sleep(20);
    assert.equal(first.got.length, 50, 'it waits for the full connection');
    first.close();
    state.target = null;
    spool.append(msg(200));
    const second = new TestTarget(1000);
    state.target = second;
    spool.pump();
    await until(async () => state.empty === 1, 5000, 'delivered');
    assert.deepEqual([...first.got, ...second.got], texts(0, 201));
    await spool.close();
  });

  it('a file that cannot be written keeps everything in memory, blocked (its host paused) until delivered', async () => {
    const notADir = join(dir, 'unit-file');
    await writeFile(notADir, 'a file where the spool directory should be');
    const { spool, state } = testSpool(join(notADir, 'spool'), 256);
    for (let i = 0; i < 20; i++) spool.append(msg(i));
    await until(async () => state.errors.length > 0, 5000, 'the write fails');
    assert.match(state.errors[0]!, /cannot write; the process stays paused/);
    assert.equal(spool.blocked, true);
    spool.append(msg(20), true);
    const t = new TestTarget(3);
    state.target = t;
    spool.pump();
    await until(async () => state.empty === 1, 5000, 'delivered');
    assert.deepEqual(t.got, texts(0, 21));
    assert.equal(spool.blocked, false);
  });
});
