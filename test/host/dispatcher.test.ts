/**
 * The host dispatcher at the byte level: client messages in (as the agent
 * routes them), agent messages out (as the agent passes them back), decoded
 * with the protocol's own codec. Exactly one Response or Error per request,
 * none for Cancel; Unsupported for unknown codes; InvalidArgument for
 * malformed arguments; Canceled for a canceled request; TooLarge for a
 * result above the limit; StartProcess's Response before its events, Exited
 * last.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HostDispatcher } from '../../src/host/dispatcher.js';
import { HANDLERS } from '../../src/host/handlers.js';
import {
  AgentType,
  decodeEventBody,
  decodeReply,
  decodeResult,
  EVENT_ROUTE,
  EventCode,
  encodeClientMessage,
  encodeProductRequest,
  isHostTempName,
  joinPieces,
  type Pieces,
  type ProductCommand,
  type Reply,
  type RequestOf,
} from '../../src/protocol/index.js';
import { cleanup, RecordingChannel, settingsFor, tempDir, tempHost } from './helpers.js';

after(cleanup);

const ROUTE = 7;
const req = <N extends ProductCommand>(name: N, token: number, args: RequestOf<N>) =>
  encodeProductRequest(AgentType.Otter, name, token, args);

function replies(channel: RecordingChannel, route = ROUTE): Reply[] {
  return channel.sent.filter((m) => m.route === route).map((m) => decodeReply(m.message));
}
function ofToken(channel: RecordingChannel, token: number, route = ROUTE): Reply[] {
  return replies(channel, route).filter((r) => 'token' in r && r.token === token);
}
const settle = () => new Promise((r) => setTimeout(r, 100));

describe('dispatch by the catalog', () => {
  it('answers on the request route with the token: Response with the typed result', async () => {
    const { dir, svc, channel } = await tempHost();
    svc.handle(ROUTE, req('GetBaseWorkingDirectory', 41, {}));
    svc.handle(ROUTE + 1, req('FileExists', 42, { path: 'nope' }));
    await channel.until(() => channel.sent.length === 2);
    const [a] = ofToken(channel, 41);
    assert.equal(a?.kind, 'response');
    assert.deepEqual(decodeResult('GetBaseWorkingDirectory', (a as { body: Buffer }).body), { path: dir });
    const [b] = ofToken(channel, 42, ROUTE + 1);
    assert.equal(b?.kind, 'response');
    assert.deepEqual(decodeResult('FileExists', (b as { body: Buffer }).body), { exists: false });
  });

  it('an unknown command is Error Unsupported for its token; the host keeps serving', async () => {
    const { svc, channel } = await tempHost();
    const token = Buffer.alloc(4);
    token.writeInt32LE(-5);
    for (const code of [0, 22, 39, 45, 77, 98, 100, 0x7fffffff])
      svc.handle(ROUTE, encodeClientMessage(AgentType.Otter, code, token));
    svc.handle(ROUTE, req('FileExists', 1, { path: 'x' }));
    await channel.until(() => channel.sent.length === 9);
    const errors = ofToken(channel, -5);
    assert.equal(errors.length, 8);
    for (const e of errors) {
      assert.equal(e.kind, 'error');
      assert.equal((e as { errorKind: string }).errorKind, 'Unsupported');
    }
    assert.equal(ofToken(channel, 1)[0]?.kind, 'response');
  });

  it('a command without a handler is Unsupported too', async () => {
    const dir = await tempDir();
    const channel = new RecordingChannel();
    const { FileExists: _dropped, ...rest } = HANDLERS;
    const svc = new HostDispatcher(settingsFor(dir), channel, { handlers: rest });
    svc.handle(ROUTE, req('FileExists', 3, { path: 'x' }));
    await channel.until(() => channel.sent.length === 1);
    assert.match((ofToken(channel, 3)[0] as { message: string }).message, /FileExists \(2\)/);
  });

  it('malformed arguments are Error InvalidArgument; bytes after the fields are ignored', async () => {
    const { svc, channel } = await tempHost();
    const good = req('FileExists', 9, { path: 'x' });
    svc.handle(ROUTE, good.subarray(0, good.length - 1)); // the string is cut short
    svc.handle(ROUTE, Buffer.concat([req('FileExists', 10, { path: 'x' }), Buffer.from([1, 2, 3])]));
    await channel.until(() => channel.sent.length === 2);
    const [bad] = ofToken(channel, 9);
    assert.equal((bad as { errorKind: string }).errorKind, 'InvalidArgument');
    assert.match((bad as { message: string }).message, /FileExists: malformed arguments/);
    assert.equal(ofToken(channel, 10)[0]?.kind, 'response');
  });

  it('data too short for a token, or a message shorter than a header, is dropped without a crash', async () => {
    const { svc, channel } = await tempHost();
    svc.handle(ROUTE, encodeClientMessage(AgentType.Otter, 2, Buffer.from([1, 2])));
    svc.handle(ROUTE, Buffer.from([1, 2, 0]));
    svc.handle(ROUTE, Buffer.alloc(0));
    await settle();
    assert.equal(channel.sent.length, 0);
  });

  it('ExecuteJob of a type nobody installed is Unsupported, naming it and the built-in types', async () => {
    const { svc, channel } = await tempHost();
    svc.handle(ROUTE, req('ExecuteJob', 4, { jobType: 'Inedo.Deploy', payload: new Uint8Array(3) }));
    await channel.until(() => channel.sent.length === 1);
    const [e] = ofToken(channel, 4);
    assert.equal((e as { errorKind: string }).errorKind, 'Unsupported');
    assert.match(
      (e as { message: string }).message,
      /"Inedo\.Deploy" is not installed.*installed: outpost\.manifest \(built in\)/,
    );
  });

  it('a result above MaxMessageSize is Error TooLarge instead', async () => {
    const { svc, channel } = await tempHost({ maxMessageSize: 64 * 1024 });
    const name = `OUTPOST_BIG_${process.pid}`;
    process.env[name] = 'x'.repeat(70 * 1024);
    try {
      svc.handle(ROUTE, req('GetEnvironmentVariable', 5, { name }));
      await channel.until(() => channel.sent.length === 1);
    } finally {
      delete process.env[name];
    }
    const [e] = ofToken(channel, 5);
    assert.equal((e as { errorKind: string }).errorKind, 'TooLarge');
  });

  it('many concurrent requests get exactly one reply each', async () => {
    const { dir, svc, channel } = await tempHost();
    await writeFile(join(dir, 'f'), 'data');
    const n = 200;
    for (let t = 1; t <= n; t++) {
      if (t % 3 === 0) svc.handle(ROUTE, req('ReadAllBytes', t, { path: 'f' }));
      else if (t % 3 === 1) svc.handle(ROUTE, req('GetFileInfo', t, { path: t % 2 ? 'f' : 'missing' }));
      else svc.handle(ROUTE, req('ReadAllBytes', t, { path: 'missing' }));
    }
    await channel.until(() => channel.sent.length >= n);
    await settle();
    assert.equal(channel.sent.length, n);
    const tokens = replies(channel).map((r) => (r as { token: number }).token);
    assert.deepEqual(
      [...new Set(tokens)].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i + 1),
    );
  });
});

describe('Cancel', () => {
  it('never gets a reply of its own, whatever its target or arguments', async () => {
    const { svc, channel } = await tempHost();
    svc.handle(ROUTE, req('Cancel', 1, { targetToken: 12345 }));
    svc.handle(ROUTE, req('Cancel', 2, { targetToken: 2 }));
    svc.handle(ROUTE, req('Cancel', 3, { targetToken: 0 }).subarray(0, 11)); // malformed
    await settle();
    assert.equal(channel.sent.length, 0);
  });

  it('a running request of that token on the same route ends with Error Canceled, once', async () => {
    const dir = await tempDir();
    const channel = new RecordingChannel();
    let dropped = 0;
    const aborted: boolean[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const svc = new HostDispatcher(settingsFor(dir), channel, {
      handlers: {
        ...HANDLERS,
        // A slow request whose Response would be followed by work (as StartProcess's events).
        FileExists: async (_a, ctx) => {
          ctx.afterReply(
            () => {},
            () => dropped++,
          );
          await gate;
          aborted.push(ctx.signal.aborted);
          return { exists: true };
        },
      },
    });
    svc.handle(ROUTE, req('FileExists', 50, { path: 'x' }));
    svc.handle(ROUTE + 1, req('FileExists', 50, { path: 'x' })); // same token, another route
    svc.handle(ROUTE, req('Cancel', 51, { targetToken: 50 }));
    await channel.until(() => channel.sent.length === 1);
    release();
    await channel.until(() => channel.sent.length === 2);
    await settle();
    const mine = ofToken(channel, 50);
    assert.equal(mine.length, 1);
    assert.equal((mine[0] as { errorKind: string }).errorKind, 'Canceled');
    assert.equal(ofToken(channel, 51).length, 0, 'no reply for the Cancel itself');
    const other = ofToken(channel, 50, ROUTE + 1);
    assert.equal(other[0]?.kind, 'response', 'the other route’s request is not touched');
    assert.equal(dropped, 1, 'the canceled one learns its Response will never be sent');
    assert.deepEqual(aborted.sort(), [false, true], 'a handler can see it was canceled');
  });

  it('an OpenFile that completes after its Cancel closes its handle again (the host can go idle)', async () => {
    const dir = await tempDir();
    const told: number[] = [];
    const channel = Object.assign(new RecordingChannel(), { handles: (open: number) => told.push(open) });
    const svc = new HostDispatcher(settingsFor(dir), channel);
    await writeFile(join(dir, 'f.txt'), 'x');
    // The Cancel arrives in the same tick: it answers first, the open still completes.
    svc.handle(ROUTE, req('OpenFile', 80, { path: 'f.txt', fileMode: 3, access: 1 }));
    svc.handle(ROUTE, req('Cancel', 81, { targetToken: 80 }));
    await channel.until(() => ofToken(channel, 80).length === 1);
    assert.equal((ofToken(channel, 80)[0] as { errorKind: string }).errorKind, 'Canceled');
    // A request after it: its reply goes out after the open has finished.
    await svc.call('FileExists', { path: 'f.txt' });
    await settle();
    assert.equal(svc.files.openHandles, 0, 'nobody knows that handle: it is closed');
    assert.equal(told.at(-1) ?? 0, 0, 'the agent is told no handle is open');
    assert.equal(ofToken(channel, 80).length, 1, 'one reply only');
  });

  it('a running process ends with Exited (−1, SIGTERM) and no other reply', async () => {
    const { svc, channel } = await tempHost({ allowedRoots: null });
    svc.handle(
      ROUTE,
      req('StartProcess', 60, {
        fileName: 'sleep',
        args: ['100'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await channel.until(() => ofToken(channel, 60).length === 1);
    svc.handle(ROUTE, req('Cancel', 61, { targetToken: 60 }));
    await channel.until(() => ofToken(channel, 60, EVENT_ROUTE).length === 1);
    await settle();
    const [exited] = ofToken(channel, 60, EVENT_ROUTE);
    assert.equal(exited?.kind, 'event');
    assert.equal((exited as { event: number }).event, EventCode.Exited);
    assert.deepEqual(decodeEventBody('Exited', (exited as { body: Buffer }).body), {
      exitCode: -1,
      signal: 'SIGTERM',
    });
    assert.equal(ofToken(channel, 61).length + ofToken(channel, 61, EVENT_ROUTE).length, 0);
    assert.equal(ofToken(channel, 60).length, 1, 'only the StartProcess Response on the route');
  });
});

describe('StartProcess over the dispatcher', () => {
  it('Response {osProcessId} before any event; output; Exited last on EVENT_ROUTE', async () => {
    const { svc, channel } = await tempHost({ allowedRoots: null });
    const args = {
      fileName: 'printf "%s-%s" "$1" "$2"; echo err >&2',
      args: ['a', 'b'],
      workingDirectory: null,
      environment: {},
      flags: 2,
    };
    svc.handle(ROUTE, req('StartProcess', 70, args));
    await channel.until(() =>
      ofToken(channel, 70, EVENT_ROUTE).some((r) => (r as { event: number }).event === EventCode.Exited),
    );
    const order = channel.sent
      .map((m) => ({ route: m.route, reply: decodeReply(m.message) }))
      .filter((x) => 'token' in x.reply && x.reply.token === 70);
    assert.equal(order[0]?.route, ROUTE);
    assert.equal(order[0]?.reply.kind, 'response');
    const { osProcessId } = decodeResult('StartProcess', (order[0]!.reply as { body: Buffer }).body);
    assert.ok(osProcessId > 0);
    const events = order.slice(1);
    assert.ok(events.every((e) => e.route === EVENT_ROUTE && e.reply.kind === 'event'));
    const last = events.at(-1)!.reply as { event: number; body: Buffer };
    assert.equal(last.event, EventCode.Exited);
    assert.deepEqual(decodeEventBody('Exited', last.body), { exitCode: 0, signal: null });
    const text = (code: number) =>
      Buffer.concat(
        events
          .map((e) => e.reply as { event: number; body: Buffer })
          .filter((e) => e.event === code)
          .map((e) => Buffer.from(decodeEventBody('Stdout', e.body).data)),
      ).toString();
    assert.equal(text(EventCode.Stdout), 'a-b');
    assert.equal(text(EventCode.Stderr), 'err\n');
  });

  it('an unknown process token is InvalidArgument; TerminateProcess answers at once', async () => {
    const { svc, channel } = await tempHost({ allowedRoots: null });
    svc.handle(ROUTE, req('WriteStdin', 80, { processToken: 999, data: new Uint8Array(1), close: false }));
    svc.handle(ROUTE, req('TerminateProcess', 81, { processToken: 999, entireTree: true }));
    await channel.until(() => channel.sent.length === 2);
    for (const t of [80, 81])
      assert.equal((ofToken(channel, t)[0] as { errorKind: string }).errorKind, 'InvalidArgument');
    svc.handle(
      ROUTE,
      req('StartProcess', 82, {
        fileName: 'sleep',
        args: ['100'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await channel.until(() => ofToken(channel, 82).length === 1);
    svc.handle(ROUTE, req('TerminateProcess', 83, { processToken: 82, entireTree: true }));
    await channel.until(() => ofToken(channel, 83).length === 1);
    assert.equal(ofToken(channel, 83)[0]?.kind, 'response');
    await channel.until(() => ofToken(channel, 82, EVENT_ROUTE).length >= 1);
    await svc.shutdown();
  });

  it('the per-session process limit is LimitExceeded', async () => {
    const { svc, channel } = await tempHost({ allowedRoots: null, maxProcesses: 1 });
    const start = (token: number) =>
      req('StartProcess', token, {
        fileName: 'sleep',
        args: ['100'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      });
    svc.handle(ROUTE, start(90));
    await channel.until(() => ofToken(channel, 90).length === 1);
    svc.handle(ROUTE, start(91));
    await channel.until(() => ofToken(channel, 91).length === 1);
    assert.equal((ofToken(channel, 91)[0] as { errorKind: string }).errorKind, 'LimitExceeded');
    await svc.shutdown();
    assert.ok(ofToken(channel, 90, EVENT_ROUTE).length >= 1, 'Exited delivered at shutdown');
  });

  it('the per-session handle limit is LimitExceeded', async () => {
    const { svc, channel } = await tempHost({ maxOpenFiles: 1 });
    svc.handle(ROUTE, req('OpenFile', 1, { path: 'a', fileMode: 2, access: 2 }));
    await channel.until(() => channel.sent.length === 1);
    svc.handle(ROUTE, req('OpenFile', 2, { path: 'b', fileMode: 2, access: 2 }));
    await channel.until(() => channel.sent.length === 2);
    assert.equal((ofToken(channel, 2)[0] as { errorKind: string }).errorKind, 'LimitExceeded');
    svc.handle(ROUTE, req('CloseFile', 3, { handle: 77 }));
    await channel.until(() => channel.sent.length === 3);
    assert.equal((ofToken(channel, 3)[0] as { errorKind: string }).errorKind, 'InvalidArgument');
    await svc.shutdown();
  });
});

describe('open handles reported to the agent (issue 18, item 2)', () => {
  /** Records handle reports in one sequence with the replies, to check their order. */
  class HandlesChannel extends RecordingChannel {
    readonly seen: string[] = [];
    override send(route: number, message: Buffer | Pieces): boolean {
      const r = decodeReply(joinPieces(message));
      this.seen.push(`${r.kind}:${'token' in r ? r.token : ''}`);
      return super.send(route, message);
    }
    handles(open: number): void {
      this.seen.push(`handles:${open}`);
    }
  }

  it('says when handles go from none to some and back, before the reply that changed it', async () => {
    const dir = await tempDir();
    const channel = new HandlesChannel();
    const svc = new HostDispatcher(settingsFor(dir), channel);
    const open = (token: number, name: string) =>
      svc.handle(ROUTE, req('OpenFile', token, { path: join(dir, name), fileMode: 2, access: 2 }));
    open(1, 'a');
    await channel.until(() => channel.sent.length === 1);
    open(2, 'b');
    await channel.until(() => channel.sent.length === 2);
    const [h1, h2] = [1, 2].map((t) =>
      decodeResult('OpenFile', (ofToken(channel, t)[0] as { body: Buffer }).body),
    );
    svc.handle(ROUTE, req('CloseFile', 3, { handle: h1!.handle }));
    await channel.until(() => channel.sent.length === 3);
    svc.handle(ROUTE, req('FileExists', 4, { path: 'x' }));
    await channel.until(() => channel.sent.length === 4);
    svc.handle(ROUTE, req('CloseFile', 5, { handle: h2!.handle }));
    await channel.until(() => channel.sent.length === 5);
    assert.deepEqual(channel.seen, [
      'handles:1',
      'response:1',
      'response:2',
      'response:3',
      'response:4',
      'handles:0',
      'response:5',
    ]);
    await svc.shutdown();
  });
});

describe('temp files of atomic writes reported to the agent (issue 18)', () => {
  /** Records created/removed, and whether the file already existed when it was announced. */
  class TempChannel extends RecordingChannel {
    readonly log: string[] = [];
    readonly existedAtCreate: boolean[] = [];
    readonly temps = {
      created: (p: string) => {
        this.existedAtCreate.push(existsSync(p));
        this.log.push(`+${basename(p)}`);
        return null;
      },
      removed: (p: string) => {
        this.log.push(`-${basename(p)}`);
      },
    };
  }

  it('each temp name is told before it exists and when it is gone: small, large, copy, failed write', async () => {
    const dir = await tempDir();
    const channel = new TempChannel();
    const svc = new HostDispatcher(settingsFor(dir), channel);
    const write = (name: string, size: number) =>
      svc.call('WriteAllBytes', {
        path: name,
        contents: Buffer.alloc(size, 1),
        lastWriteUtc: null,
        mode: null,
      });
    await write('small.bin', 10);
    await write('large.bin', 300 * 1024);
    await svc.call('CopyFile', { source: 'large.bin', target: 'copy.bin', overwrite: false });
    await writeFile(join(dir, 'plain'), 'a file');
    // A write that fails after its temp name was told (a file where its directory should be).
    await assert.rejects(write('plain/y', 1));
    assert.equal(existsSync(join(dir, 'plain')), true);
    const names = channel.log.map((l) => l.slice(1));
    assert.equal(channel.log.length, 8, channel.log.join());
    for (let i = 0; i < 8; i += 2) {
      assert.equal(channel.log[i], `+${names[i]}`);
      assert.equal(channel.log[i + 1], `-${names[i]}`, 'removed right after, the same name');
      assert.ok(isHostTempName(names[i]!), names[i]);
    }
    assert.deepEqual(channel.existedAtCreate, [false, false, false, false]);
    assert.equal(svc.files.tempFiles, 0);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.endsWith('.tmp')),
      [],
    );
  });

  it('a write that waits for the news to leave the process creates its temp file only then', async () => {
    const dir = await tempDir();
    const channel = new RecordingChannel();
    let release!: () => void;
    let announced = '';
    const svc = new HostDispatcher(
      settingsFor(dir),
      Object.assign(channel, {
        temps: {
          created: (p: string) => {
            announced = p;
            return new Promise<void>((r) => {
              release = r;
            });
          },
          removed: () => {},
        },
      }),
    );
    const done = svc.call('WriteAllBytes', {
      path: 'w.bin',
      contents: Buffer.alloc(5),
      lastWriteUtc: null,
      mode: null,
    });
    await settle();
    assert.ok(announced);
    assert.equal(existsSync(announced), false, 'not created while the news is queued');
    assert.equal(existsSync(join(dir, 'w.bin')), false);
    release();
    await done;
    assert.equal(existsSync(join(dir, 'w.bin')), true);
  });

  it('shutdown in the middle of a write removes its temp file', async () => {
    const dir = await tempDir();
    const channel = new RecordingChannel();
    let announced = '';
    let created!: () => void;
    const gate = new Promise<void>((r) => {
      created = r;
    });
    const svc = new HostDispatcher(settingsFor(dir), channel, {
      // The rename never comes: the write is stuck between its temp file and the target.
      fileHooks: { rename: () => new Promise<void>(() => created()) },
    });
    void svc.call('WriteAllBytes', {
      path: 'stuck.bin',
      contents: Buffer.alloc(5),
      lastWriteUtc: null,
      mode: null,
    });
    await gate;
    announced = (await readdir(dir)).find((n) => n.endsWith('.tmp')) ?? '';
    assert.ok(announced, 'the temp file exists while the write is under way');
    await svc.shutdown();
    assert.deepEqual(await readdir(dir), []);
  });
});
