/**
 * ProcessManager against real child processes (POSIX: sh, sleep, cat, env).
 * Every test works inside its own temp directory and ends with every process
 * tree it started gone.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PathResolver } from '../../src/host/paths.js';
import { ProcessManager, type ProcessManagerOptions } from '../../src/host/processes.js';
import { serviceEnvironment } from '../../src/host/spawning.js';
import { type EventSink, type HostContext, HostError } from '../../src/host/types.js';
import {
  type EventName,
  type EventOf,
  MAX_OUTPUT_CHUNK,
  ProcessFlags,
  type RequestOf,
  TOKEN_SIZE,
} from '../../src/protocol/index.js';
import { settingsFor } from './helpers.js';

const EMIT = fileURLToPath(new URL('../fixtures/processes/emit.mjs', import.meta.url));
const NODE = process.execPath;

type Exit = EventOf<'Exited'>;
interface Ev {
  token: number;
  name: EventName;
  data: Uint8Array | Exit;
}

/** Records every event and checks the per-token invariants as they happen. */
class RecordingSink implements EventSink {
  readonly events: Ev[] = [];
  readonly violations: string[] = [];
  private readonly exits = new Map<number, Exit>();
  private readonly waiters = new Map<number, ((e: Exit) => void)[]>();

  send<N extends EventName>(token: number, name: N, data: EventOf<N>): boolean {
    if (this.exits.has(token)) this.violations.push(`${name} on token ${token} after Exited`);
    if (name === 'Exited') {
      const exit = data as Exit;
      this.exits.set(token, exit);
      this.events.push({ token, name, data: exit });
      for (const w of this.waiters.get(token) ?? []) w(exit);
      this.waiters.delete(token);
    } else {
      const bytes = (data as EventOf<'Stdout'>).data;
      if (bytes.length === 0 || bytes.length > MAX_OUTPUT_CHUNK)
        this.violations.push(`${name} chunk of ${bytes.length} bytes`);
      this.events.push({ token, name, data: bytes });
    }
    return true;
  }
  whenWritable(): Promise<void> {
    return Promise.resolve();
  }
  exited(token: number, ms = 10_000): Promise<Exit> {
    const done = this.exits.get(token);
    if (done) return Promise.resolve(done);
    return withTimeout(
      new Promise<Exit>((resolve) => {
        const list = this.waiters.get(token) ?? [];
        list.push(resolve);
        this.waiters.set(token, list);
      }),
      ms,
      `Exited on token ${token}`,
    );
  }
  chunks(token: number, name: 'Stdout' | 'Stderr'): Buffer[] {
    return this.events
      .filter((e) => e.token === token && e.name === name)
      .map((e) => Buffer.from(e.data as Uint8Array));
  }
  bytes(token: number, name: 'Stdout' | 'Stderr'): Buffer {
    return Buffer.concat(this.chunks(token, name));
  }
  text(token: number, name: 'Stdout' | 'Stderr'): string {
    return this.bytes(token, name).toString('utf8');
  }
  count(token: number): number {
    return this.events.filter((e) => e.token === token).length;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function req(p: Partial<RequestOf<'StartProcess'>> & { fileName: string }): RequestOf<'StartProcess'> {
  return { args: [], workingDirectory: null, environment: {}, flags: 0, ...p };
}

/** Every pid started by any test; all their groups must be gone at the end. */
const startedPids = new Set<number>();

interface Env {
  dir: string;
  ctx: HostContext;
  sink: RecordingSink;
  pm: ProcessManager;
  run(
    token: number,
    p: Partial<RequestOf<'StartProcess'>> & { fileName: string },
  ): Promise<{ exit: Exit; out: string; err: string; pid: number }>;
  start(token: number, p: Partial<RequestOf<'StartProcess'>> & { fileName: string }): Promise<number>;
}

async function setup(
  t: TestContext,
  ctxOver: Partial<HostContext> = {},
  opts: ProcessManagerOptions = { killGraceMs: 500, pipeGraceMs: 300 },
  sink = new RecordingSink(),
): Promise<Env> {
  const dir = await realpath(await mkdtemp(path.join(os.tmpdir(), 'outpost-proc-')));
  const ctx: HostContext = { ...pmCtx(dir), ...ctxOver };
  const pm = managerFor(ctx, sink, opts);
  t.after(async () => {
    await withTimeout(pm.terminateAll(), 10_000, 'terminateAll in cleanup');
    await rm(dir, { recursive: true, force: true });
  });
  const start = async (token: number, p: Partial<RequestOf<'StartProcess'>> & { fileName: string }) => {
    const h = await pm.start(token, req(p));
    startedPids.add(h.pid);
    h.begin();
    return h.pid;
  };
  const run = async (token: number, p: Partial<RequestOf<'StartProcess'>> & { fileName: string }) => {
    const pid = await start(token, p);
    const exit = await sink.exited(token);
    return { exit, out: sink.text(token, 'Stdout'), err: sink.text(token, 'Stderr'), pid };
  };
  return { dir, ctx, sink, pm, run, start };
}

function pmCtx(dir: string): HostContext {
  return settingsFor(dir, {
    allowedRoots: null,
    maxMessageSize: 16 * 1024 * 1024,
    maxOpenFiles: 64,
    maxProcesses: 32,
  });
}

/** A manager resolving working directories through the host's one path resolver, as the host does. */
function managerFor(ctx: HostContext, sink: EventSink, opts?: ProcessManagerOptions): ProcessManager {
  return new ProcessManager(ctx, sink, new PathResolver(ctx), opts);
}

async function rejectsWith(p: Promise<unknown>, kind: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HostError, `expected a HostError, got ${String(e)}`);
    assert.equal(e.kind, kind, `kind of "${e.message}"`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Live (non-zombie) members of a process group, from /proc. */
async function groupMembers(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(name));
  }
  return out;
}

async function waitFor(cond: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

after(async () => {
  // No test may leave a process behind (zombies reaped by init do not count).
  const leftovers: number[] = [];
  for (const pid of startedPids) leftovers.push(...(await groupMembers(pid)));
  for (const pid of startedPids) killGroup(pid);
  assert.deepEqual(leftovers, [], 'processes left behind by the tests');
});

describe('ProcessManager: exit status', () => {
  test('exit codes 0 and 3 with the pid reported', async (t) => {
    const { run, sink } = await setup(t);
    const ok = await run(1, { fileName: 'true' });
    assert.deepEqual(ok.exit, { exitCode: 0, signal: null });
    assert.ok(ok.pid > 0);
    const three = await run(2, { fileName: 'sh', args: ['-c', 'exit 3'] });
    assert.deepEqual(three.exit, { exitCode: 3, signal: null });
    assert.deepEqual(sink.violations, []);
  });

  test('killed by a signal: exitCode −1 and the signal name', async (t) => {
    const { run } = await setup(t);
    const r = await run(1, { fileName: 'sh', args: ['-c', 'kill -KILL $$'] });
    assert.deepEqual(r.exit, { exitCode: -1, signal: 'SIGKILL' });
  });

  test('terminate without entireTree sends SIGTERM to the child only', async (t) => {
    const { start, pm, sink } = await setup(t);
    const pid = await start(1, { fileName: 'sh', args: ['-c', 'sleep 100 & wait'] });
    await waitFor(async () => (await groupMembers(pid)).length === 2, 5000, 'sh and sleep');
    await pm.terminate({ processToken: 1, entireTree: false });
    const exit = await sink.exited(1);
    assert.deepEqual(exit, { exitCode: -1, signal: 'SIGTERM' });
    // The orphaned sleep still holds the pipes: Exited came after the pipe grace, not when it ends.
    const left = await groupMembers(pid);
    assert.equal(left.length, 1, 'the grandchild was not signalled');
    killGroup(pid);
  });

  test('no event before begin(); output produced meanwhile is kept', async (t) => {
    const { pm, sink } = await setup(t);
    const h = await pm.start(7, req({ fileName: 'sh', args: ['-c', 'echo early; echo late >&2'] }));
    startedPids.add(h.pid);
    await sleep(300); // the child has long exited
    assert.equal(sink.count(7), 0, 'events before begin()');
    assert.equal(pm.running, 1);
    h.begin();
    h.begin(); // idempotent
    const exit = await sink.exited(7);
    assert.deepEqual(exit, { exitCode: 0, signal: null });
    assert.equal(sink.text(7, 'Stdout'), 'early\n');
    assert.equal(sink.text(7, 'Stderr'), 'late\n');
    assert.equal(sink.events.filter((e) => e.token === 7 && e.name === 'Exited').length, 1);
    assert.equal(pm.running, 0);
  });
});

describe('ProcessManager: output', () => {
  test('stdout and stderr are separate and each in order; Exited is last', async (t) => {
    const { run, sink } = await setup(t);
    const script = 'i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done';
    const r = await run(1, { fileName: 'sh', args: ['-c', script] });
    assert.deepEqual(r.exit, { exitCode: 0, signal: null });
    const expect = (p: string) => Array.from({ length: 2000 }, (_, i) => `${p}${i}\n`).join('');
    assert.equal(r.out, expect('out'));
    assert.equal(r.err, expect('err'));
    const mine = sink.events.filter((e) => e.token === 1);
    assert.equal(mine.at(-1)?.name, 'Exited');
    assert.deepEqual(sink.violations, []);
  });

  test('20 MB of output arrives complete and in order, in chunks of at most MAX_OUTPUT_CHUNK', async (t) => {
    const { run, sink } = await setup(t);
    const size = 20 * 1024 * 1024;
    const r = await run(1, { fileName: NODE, args: [EMIT, String(size)] });
    assert.deepEqual(r.exit, { exitCode: 0, signal: null });
    const out = sink.bytes(1, 'Stdout');
    assert.equal(out.length, size);
    assert.equal(createHash('sha256').update(out).digest('hex'), r.err);
    assert.ok(sink.chunks(1, 'Stdout').every((c) => c.length <= MAX_OUTPUT_CHUNK));
    assert.deepEqual(sink.violations, []);
  });

  test('chunks also fit a small maxMessageSize', async (t) => {
    const { run, sink } = await setup(t, { maxMessageSize: 64 * 1024 });
    const r = await run(1, { fileName: NODE, args: [EMIT, String(1024 * 1024)] });
    assert.equal(r.out.length > 0, true);
    const sizes = sink.chunks(1, 'Stdout').map((c) => c.length);
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      1024 * 1024,
    );
    // Token, event kind and byte-array length must still fit the message limit.
    const largest = Math.max(...sizes);
    assert.ok(largest + TOKEN_SIZE + 1 + 4 <= 64 * 1024, `largest chunk ${largest}`);
  });

  test('a grandchild holding the pipes does not delay Exited beyond the grace', async (t) => {
    const { start, sink } = await setup(t);
    const pid = await start(1, { fileName: 'sh', args: ['-c', 'sleep 30 & echo started'] });
    const exit = await sink.exited(1, 20_000);
    assert.deepEqual(exit, { exitCode: 0, signal: null });
    assert.equal(sink.text(1, 'Stdout'), 'started\n');
    assert.equal((await groupMembers(pid)).length, 1, 'the sleep is still running (and is not ours to kill)');
    killGroup(pid);
  });
});

describe('ProcessManager: stdin', () => {
  test('cat echoes what is written; close ends it; later writes are refused', async (t) => {
    const { start, pm, sink } = await setup(t);
    await start(1, { fileName: 'cat', flags: ProcessFlags.KeepStdinOpen });
    await pm.writeStdin({ processToken: 1, data: Buffer.from('hello '), close: false });
    await pm.writeStdin({ processToken: 1, data: Buffer.from('world'), close: true });
    const exit = await sink.exited(1);
    assert.deepEqual(exit, { exitCode: 0, signal: null });
    assert.equal(sink.text(1, 'Stdout'), 'hello world');
    await rejectsWith(
      pm.writeStdin({ processToken: 1, data: Buffer.from('x'), close: false }),
      'InvalidArgument',
    );
    await rejectsWith(
      pm.writeStdin({ processToken: 99, data: Buffer.from('x'), close: false }),
      'InvalidArgument',
    );
  });

  test('writes after close are refused while the process still runs', async (t) => {
    const { start, pm, sink } = await setup(t);
    await start(1, {
      fileName: 'sh',
      args: ['-c', 'cat; sleep 0.3'],
      flags: ProcessFlags.KeepStdinOpen,
    });
    await pm.writeStdin({ processToken: 1, data: new Uint8Array(0), close: true });
    await rejectsWith(
      pm.writeStdin({ processToken: 1, data: Buffer.from('x'), close: false }),
      'InvalidArgument',
      /stdin/,
    );
    assert.deepEqual(await sink.exited(1), { exitCode: 0, signal: null });
  });

  test('without KeepStdinOpen stdin is closed at once and WriteStdin is refused', async (t) => {
    const { start, pm, sink } = await setup(t);
    await start(1, { fileName: 'sh', args: ['-c', 'cat; echo eof; sleep 0.3'] });
    await rejectsWith(
      pm.writeStdin({ processToken: 1, data: Buffer.from('x'), close: false }),
      'InvalidArgument',
      /KeepStdinOpen/,
    );
    assert.deepEqual(await sink.exited(1), { exitCode: 0, signal: null });
    assert.equal(sink.text(1, 'Stdout'), 'eof\n');
  });

  test('8 MB through cat: writes wait for the pipe and every byte comes back in order', async (t) => {
    const { start, pm, sink } = await setup(t);
    await start(1, { fileName: 'cat', flags: ProcessFlags.KeepStdinOpen });
    const data = randomBytes(8 * 1024 * 1024);
    for (let off = 0; off < data.length; off += 1024 * 1024)
      await pm.writeStdin({ processToken: 1, data: data.subarray(off, off + 1024 * 1024), close: false });
    await pm.writeStdin({ processToken: 1, data: new Uint8Array(0), close: true });
    assert.deepEqual(await sink.exited(1), { exitCode: 0, signal: null });
    assert.ok(sink.bytes(1, 'Stdout').equals(data));
  });

  test('writing to a process that closed its stdin fails with IOError, not a crash', async (t) => {
    const { start, pm, sink } = await setup(t);
    // The shell closes its stdin, then lingers so the process is still running.
    await start(1, {
      fileName: 'sh',
      args: ['-c', 'exec 0<&-; sleep 1'],
      flags: ProcessFlags.KeepStdinOpen,
    });
    await sleep(200);
    await rejectsWith(
      pm.writeStdin({ processToken: 1, data: randomBytes(1024 * 1024), close: false }),
      'IOError',
      /stdin/,
    );
    await pm.terminate({ processToken: 1, entireTree: true });
    await sink.exited(1);
  });
});

describe('ProcessManager: shell, environment, working directory', () => {
  test('UseShell runs fileName through /bin/sh -c with the args as its positional parameters', async (t) => {
    const { run } = await setup(t);
    const r = await run(1, {
      fileName: 'printf "%s|" "$@"',
      args: ['a b', "it's", '$HOME', ';echo pwned', '', '*'],
      flags: ProcessFlags.UseShell,
    });
    assert.deepEqual(r.exit, { exitCode: 0, signal: null });
    assert.equal(r.out, "a b|it's|$HOME|;echo pwned||*|");
    const piped = await run(2, { fileName: 'echo abc | tr a-z A-Z', flags: ProcessFlags.UseShell });
    assert.equal(piped.out, 'ABC\n');
    const params = await run(3, {
      fileName: 'echo "$#:$1:$2"',
      args: ['one', 'two words'],
      flags: ProcessFlags.UseShell,
    });
    assert.equal(params.out, '2:one:two words\n', '$1 is the first arg; nothing is appended to the line');
  });

  test('without UseShell arguments reach argv verbatim (no shell)', async (t) => {
    const { run } = await setup(t);
    const r = await run(1, { fileName: 'printf', args: ['%s|', '$HOME', ';echo x', '*'] });
    assert.equal(r.out, '$HOME|;echo x|*|');
  });

  test('environment overlays the host environment', async (t) => {
    const { run } = await setup(t);
    const r = await run(1, {
      fileName: 'env',
      environment: { OUTPOST_TEST_VAR: 'overlay value', HOME: '/overridden' },
    });
    const lines = r.out.split('\n');
    assert.ok(lines.includes('OUTPOST_TEST_VAR=overlay value'));
    assert.ok(lines.includes('HOME=/overridden'));
    // Inherited as the service environment has it: under `npm test`, npm's node_modules/.bin is left out.
    assert.ok(lines.includes(`PATH=${serviceEnvironment().PATH}`), 'PATH inherited');
    assert.ok(
      !lines.some((l) => l.startsWith('PATH=') && l.includes('node_modules/.bin')),
      'no npm PATH entries',
    );
  });

  test('EmptyEnvironment passes only the given variables', async (t) => {
    const { run } = await setup(t);
    const r = await run(1, {
      fileName: '/usr/bin/env',
      environment: { ONLY: '1' },
      flags: ProcessFlags.EmptyEnvironment,
    });
    assert.equal(r.out, 'ONLY=1\n');
    // No PATH at all: a bare name falls back to execvp's default /bin:/usr/bin.
    const bare = await run(2, { fileName: 'env', environment: {}, flags: ProcessFlags.EmptyEnvironment });
    assert.deepEqual(bare.exit, { exitCode: 0, signal: null });
    assert.equal(bare.out, '');
  });

  test('a bare name is searched in the PATH of the effective environment', async (t) => {
    const { run, dir, pm } = await setup(t);
    await mkdir(path.join(dir, 'bin'));
    await writeFile(path.join(dir, 'bin', 'outpost-tool'), '#!/bin/sh\necho "tool $1"\n', { mode: 0o755 });
    const r = await run(1, {
      fileName: 'outpost-tool',
      args: ['x'],
      environment: { PATH: `${path.join(dir, 'bin')}:/usr/bin:/bin` },
    });
    assert.equal(r.out, 'tool x\n');
    await rejectsWith(pm.start(2, req({ fileName: 'outpost-tool' })), 'NotFound', /outpost-tool.*PATH/);
  });

  test('working directory: default base directory, absolute, relative to the base', async (t) => {
    const { run, dir } = await setup(t);
    await mkdir(path.join(dir, 'sub', 'deeper'), { recursive: true });
    assert.equal((await run(1, { fileName: 'pwd' })).out, `${dir}\n`);
    assert.equal((await run(2, { fileName: 'pwd', workingDirectory: '' })).out, `${dir}\n`);
    assert.equal((await run(3, { fileName: 'pwd', workingDirectory: 'sub' })).out, `${dir}/sub\n`);
    const abs = path.join(dir, 'sub', 'deeper');
    assert.equal((await run(4, { fileName: 'pwd', workingDirectory: abs })).out, `${abs}\n`);
    // A relative executable path resolves against the working directory.
    await writeFile(path.join(abs, 'here.sh'), '#!/bin/sh\necho here\n', { mode: 0o755 });
    assert.equal((await run(5, { fileName: './here.sh', workingDirectory: 'sub/deeper' })).out, 'here\n');
  });
});

describe('ProcessManager: errors before a process exists', () => {
  test('executable not found, not executable, a directory', async (t) => {
    const { pm, dir } = await setup(t);
    await rejectsWith(pm.start(1, req({ fileName: 'outpost-no-such-program-x' })), 'NotFound', /not found/);
    await rejectsWith(pm.start(2, req({ fileName: './missing.sh' })), 'NotFound', /missing\.sh/);
    await rejectsWith(pm.start(3, req({ fileName: path.join(dir, 'nope', 'x') })), 'NotFound');
    await writeFile(path.join(dir, 'plain.sh'), '#!/bin/sh\necho hi\n', { mode: 0o644 });
    await rejectsWith(pm.start(4, req({ fileName: './plain.sh' })), 'AccessDenied', /not executable/);
    await mkdir(path.join(dir, 'adir'));
    await rejectsWith(pm.start(5, req({ fileName: './adir' })), 'IsDirectory');
    // The file exists but its #! interpreter does not: still NotFound, saying so.
    await writeFile(path.join(dir, 'orphan.sh'), '#!/nonexistent/interpreter\n', { mode: 0o755 });
    await chmod(path.join(dir, 'orphan.sh'), 0o755);
    await rejectsWith(pm.start(6, req({ fileName: './orphan.sh' })), 'NotFound', /interpreter/);
    assert.equal(pm.running, 0);
    assert.deepEqual(pm.list().processes, []);
  });

  test('working directory missing, not a directory, outside the allowed roots', async (t) => {
    const { pm, dir } = await setup(t);
    await rejectsWith(
      pm.start(1, req({ fileName: 'true', workingDirectory: 'missing' })),
      'NotFound',
      /missing/,
    );
    await writeFile(path.join(dir, 'file'), 'x');
    await rejectsWith(pm.start(2, req({ fileName: 'true', workingDirectory: 'file' })), 'NotDirectory');
    const inner = path.join(dir, 'inner');
    await mkdir(inner);
    const fenced = managerFor(
      { ...pmCtx(dir), baseDirectory: inner, allowedRoots: [inner] },
      new RecordingSink(),
    );
    await rejectsWith(fenced.start(3, req({ fileName: 'true', workingDirectory: '..' })), 'AccessDenied');
    await rejectsWith(fenced.start(4, req({ fileName: 'true', workingDirectory: '/' })), 'AccessDenied');
    // A symlink inside the root that points out of it is refused as well.
    const { symlink } = await import('node:fs/promises');
    await symlink(dir, path.join(inner, 'escape'));
    await rejectsWith(fenced.start(5, req({ fileName: 'true', workingDirectory: 'escape' })), 'AccessDenied');
    const h = await fenced.start(6, req({ fileName: 'true' }));
    startedPids.add(h.pid);
    h.begin();
    await fenced.terminateAll();
    assert.equal(fenced.running, 0);
  });

  test('malformed arguments become HostErrors', async (t) => {
    const { pm } = await setup(t);
    await rejectsWith(pm.start(1, req({ fileName: '' })), 'InvalidArgument');
    await rejectsWith(pm.start(2, req({ fileName: 'echo', args: ['a\0b'] })), 'InvalidArgument');
    await rejectsWith(pm.start(3, req({ fileName: 'true', environment: { 'A=B': 'x' } })), 'InvalidArgument');
    await rejectsWith(pm.start(4, req({ fileName: 'true', flags: 64 })), 'Unsupported', /0x40/);
    await rejectsWith(
      pm.start(5, { fileName: 'true' } as unknown as RequestOf<'StartProcess'>),
      'InvalidArgument',
    );
    assert.equal(pm.running, 0);
  });

  test('maxProcesses: the next start is LimitExceeded, naming the limit; a slot frees on exit', async (t) => {
    const { start, pm, sink } = await setup(t, { maxProcesses: 2 });
    await start(1, { fileName: 'sleep', args: ['100'] });
    await start(2, { fileName: 'sleep', args: ['100'] });
    await rejectsWith(pm.start(3, req({ fileName: 'true' })), 'LimitExceeded', /\b2\b/);
    // A token that is still running cannot be reused either.
    assert.equal(pm.running, 2);
    await pm.terminate({ processToken: 1, entireTree: true });
    await sink.exited(1);
    const r = await start(3, { fileName: 'true' });
    assert.ok(r > 0);
    assert.deepEqual(await sink.exited(3), { exitCode: 0, signal: null });
  });

  test('a token already running cannot start a second process', async (t) => {
    const { start, pm } = await setup(t);
    await start(1, { fileName: 'sleep', args: ['100'] });
    await rejectsWith(pm.start(1, req({ fileName: 'true' })), 'InvalidArgument', /token 1/);
  });
});

describe('ProcessManager: termination', () => {
  test('entireTree kills the whole group, leaving no descendants', async (t) => {
    const { start, pm, sink } = await setup(t);
    const pid = await start(1, { fileName: 'sh', args: ['-c', 'sleep 100 & sleep 100 & wait'] });
    await waitFor(async () => (await groupMembers(pid)).length === 3, 5000, 'sh and two sleeps');
    await pm.terminate({ processToken: 1, entireTree: true });
    const exit = await sink.exited(1);
    assert.deepEqual(exit, { exitCode: -1, signal: 'SIGTERM' });
    await waitFor(async () => (await groupMembers(pid)).length === 0, 2000, 'the group to be empty');
    // Terminating an exited process is a no-op; an unknown token is not.
    await pm.terminate({ processToken: 1, entireTree: true });
    await rejectsWith(pm.terminate({ processToken: 42, entireTree: true }), 'InvalidArgument');
  });

  test('a tree ignoring SIGTERM gets SIGKILL after the (short) grace', async (t) => {
    const { start, pm, sink } = await setup(t, {}, { killGraceMs: 300, pipeGraceMs: 300 });
    const pid = await start(1, {
      fileName: 'sh',
      args: ['-c', 'trap "" TERM; sleep 100 & sleep 100; wait'],
    });
    await waitFor(async () => (await groupMembers(pid)).length === 3, 5000, 'sh and two sleeps');
    await pm.terminate({ processToken: 1, entireTree: true });
    const exit = await sink.exited(1);
    assert.deepEqual(exit, { exitCode: -1, signal: 'SIGKILL' });
    await waitFor(async () => (await groupMembers(pid)).length === 0, 2000, 'the group to be empty');
  });

  test('by default a child that traps TERM is killed (SIGKILL) about 5 s after TerminateProcess', async (t) => {
    const { start, pm, sink } = await setup(t, {}, { pipeGraceMs: 300 }); // the contract's 5 s grace
    const pid = await start(1, {
      fileName: 'sh',
      args: ['-c', 'trap "echo got-term" TERM; while :; do sleep 0.1; done'],
    });
    await waitFor(async () => (await groupMembers(pid)).length >= 1, 5000, 'the shell');
    await sleep(200); // let the shell install its trap
    await pm.terminate({ processToken: 1, entireTree: false });
    const exit = await sink.exited(1, 15_000);
    assert.deepEqual(exit, { exitCode: -1, signal: 'SIGKILL' });
    assert.match(sink.text(1, 'Stdout'), /got-term/, 'SIGTERM came first and was trapped');
    killGroup(pid);
  });

  test('cancel terminates a running process tree; Exited still follows', async (t) => {
    const { start, pm, sink } = await setup(t);
    const pid = await start(5, { fileName: 'sh', args: ['-c', 'sleep 100 & wait'] });
    await waitFor(async () => (await groupMembers(pid)).length === 2, 5000, 'sh and sleep');
    assert.equal(pm.cancel(5), true);
    assert.deepEqual(await sink.exited(5), { exitCode: -1, signal: 'SIGTERM' });
    await waitFor(async () => (await groupMembers(pid)).length === 0, 2000, 'the group to be empty');
    assert.equal(pm.cancel(5), false, 'no longer running');
    assert.equal(pm.cancel(12345), false, 'not a process token');
  });

  test('terminateAll ends every tree (even ones ignoring SIGTERM) and resolves after their exits', async (t) => {
    const { start, pm, sink } = await setup(t, {}, { killGraceMs: 300, pipeGraceMs: 300 });
    const pids = [
      await start(1, { fileName: 'sleep', args: ['100'] }),
      await start(2, { fileName: 'sh', args: ['-c', 'sleep 100 & sleep 100 & wait'] }),
      await start(3, { fileName: 'sh', args: ['-c', 'trap "" TERM; sleep 100'] }),
      await start(4, { fileName: 'cat', flags: ProcessFlags.KeepStdinOpen }),
    ];
    // One process whose response was never sent (begin() not called) must not hang it.
    const unbegun = await pm.start(5, req({ fileName: 'sleep', args: ['100'] }));
    startedPids.add(unbegun.pid);
    pids.push(unbegun.pid);
    await waitFor(async () => (await groupMembers(pids[1]!)).length === 3, 5000, 'the tree');
    assert.equal(pm.running, 5);
    await withTimeout(pm.terminateAll(), 5000, 'terminateAll');
    assert.equal(pm.running, 0);
    for (const token of [1, 2, 3, 4, 5])
      assert.ok(sink.events.some((e) => e.token === token && e.name === 'Exited'));
    for (const pid of pids) assert.deepEqual(await groupMembers(pid), [], `group ${pid}`);
    await rejectsWith(pm.start(9, req({ fileName: 'true' })), 'Canceled');
    assert.deepEqual(sink.violations, []);
  });

  test('ListProcesses reports token, pid, fileName and running', async (t) => {
    const { start, pm, sink } = await setup(t);
    const pid = await start(1, { fileName: 'sleep', args: ['100'] });
    const quick = await start(2, { fileName: 'true' });
    await sink.exited(2);
    assert.deepEqual(
      pm.list().processes.sort((a, b) => a.token - b.token),
      [
        { token: 1, pid, fileName: 'sleep', running: true },
        { token: 2, pid: quick, fileName: 'true', running: false },
      ],
    );
    assert.equal(pm.running, 1);
  });
});

describe('ProcessManager: concurrency and backpressure', () => {
  test('20 processes run in parallel', async (t) => {
    const { start, sink, pm } = await setup(t);
    const tokens = Array.from({ length: 20 }, (_, i) => i + 1);
    await Promise.all(tokens.map((tk) => start(tk, { fileName: 'sleep', args: ['30'] })));
    // All twenty run at the same time: none waits for another to end.
    assert.equal(pm.running, 20);
    await Promise.all(tokens.map((tk) => pm.terminate({ processToken: tk, entireTree: true })));
    const exits = await Promise.all(tokens.map((tk) => sink.exited(tk)));
    assert.ok(exits.every((e) => e.exitCode === -1 && e.signal === 'SIGTERM'));
  });

  test('200 MB through a slow sink: bounded memory, every byte in order', async (t) => {
    const sink = new SlowSink(96 * 1024 * 1024); // ~96 MB/s: slower than the child writes
    const { pm } = await setup(
      t,
      {},
      { killGraceMs: 500, pipeGraceMs: 300 },
      sink as unknown as RecordingSink,
    );
    const size = 200 * 1024 * 1024;
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 25);
    t.after(() => clearInterval(sampler));
    const h = await pm.start(1, req({ fileName: NODE, args: [EMIT, String(size)] }));
    startedPids.add(h.pid);
    h.begin();
    const exit = await withTimeout(sink.exit, 15_000, 'the 200 MB transfer');
    clearInterval(sampler);
    assert.deepEqual(exit, { exitCode: 0, signal: null });
    assert.equal(sink.stdoutBytes, size);
    assert.equal(sink.stdoutHash.digest('hex'), sink.stderr);
    // How often depends on how fast the child writes (a loaded machine writes slower); that it did is the point.
    assert.ok(sink.refusals >= 10, `the sink pushed back ${sink.refusals} times`);
    assert.ok(sink.maxQueued <= 8 * 1024 * 1024, `queued up to ${sink.maxQueued} bytes`);
    const growth = peak - rss0;
    assert.ok(growth < 100 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MB`);
    assert.deepEqual(sink.violations, []);
  });
});

/**
 * A consumer that drains at a fixed rate: it accepts every event but says
 * "stop" above 1 MB queued and "go" again below 256 KB, like a socket.
 */
class SlowSink implements EventSink {
  readonly stdoutHash = createHash('sha256');
  stdoutBytes = 0;
  stderr = '';
  refusals = 0;
  maxQueued = 0;
  readonly violations: string[] = [];
  private queue: Uint8Array[] = [];
  private queued = 0;
  private exited = false;
  private waiters: (() => void)[] = [];
  private timer: NodeJS.Timeout | null = null;
  private resolveExit!: (e: Exit) => void;
  readonly exit = new Promise<Exit>((r) => {
    this.resolveExit = r;
  });
  constructor(private readonly bytesPerSecond: number) {}

  send<N extends EventName>(_token: number, name: N, data: EventOf<N>): boolean {
    if (this.exited) this.violations.push(`${name} after Exited`);
    if (name === 'Exited') {
      this.exited = true;
      // Exited is last: deliver it once everything before it is consumed.
      const exit = data as Exit;
      const finish = () => (this.queued === 0 ? this.resolveExit(exit) : setTimeout(finish, 5));
      finish();
      return true;
    }
    const bytes = (data as EventOf<'Stdout'>).data;
    if (bytes.length > MAX_OUTPUT_CHUNK) this.violations.push(`chunk of ${bytes.length}`);
    if (name === 'Stderr') {
      this.stderr += Buffer.from(bytes).toString('utf8');
      return true;
    }
    this.queue.push(bytes);
    this.queued += bytes.length;
    this.maxQueued = Math.max(this.maxQueued, this.queued);
    this.schedule();
    if (this.queued > 1024 * 1024) {
      this.refusals++;
      return false;
    }
    return true;
  }
  whenWritable(): Promise<void> {
    if (this.queued < 256 * 1024) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }
  private schedule(): void {
    if (this.timer) return;
    const tick = 10;
    this.timer = setTimeout(() => {
      this.timer = null;
      let budget = (this.bytesPerSecond * tick) / 1000;
      while (budget > 0 && this.queue.length > 0) {
        const c = this.queue.shift()!;
        this.stdoutHash.update(c);
        this.stdoutBytes += c.length;
        this.queued -= c.length;
        budget -= c.length;
      }
      if (this.queued < 256 * 1024) for (const w of this.waiters.splice(0)) w();
      if (this.queue.length > 0) this.schedule();
    }, tick);
  }
}
