/**
 * The real host process (src/host/main.ts) over its fd-3 socket pair, driven
 * through the same PipeConnection the agent uses: it says it is up with a
 * Ping, echoes Pings, takes its settings in Init, serves requests on their
 * routes, sends events on EVENT_ROUTE, and exits cleanly on Shutdown
 * (terminating its processes).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  AgentType,
  type ControlMessage,
  decodeEventBody,
  decodeReply,
  decodeResult,
  EVENT_ROUTE,
  EventCode,
  encodeProductRequest,
  HostControl,
  type Reply,
} from '../../src/protocol/index.js';
import { PipeConnection } from '../../src/transport/index.js';
import { cleanup, settingsFor, tempDir } from './helpers.js';

after(cleanup);

const MAIN = fileURLToPath(new URL('../../src/host/main.ts', import.meta.url));

interface Host {
  child: ChildProcess;
  pipe: PipeConnection;
  controls: ControlMessage[];
  messages: { route: number; reply: Reply }[];
  until(predicate: () => boolean, what: string): Promise<void>;
}

function startHost(): Host {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), MAIN], {
    stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
  });
  const pipe = new PipeConnection(child.stdio[3] as Socket);
  const host: Host = {
    child,
    pipe,
    controls: [],
    messages: [],
    until: async (predicate, what) => {
      const deadline = Date.now() + 20_000;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
  pipe.on('control', (m) => host.controls.push(m));
  pipe.on('message', (route, message) => host.messages.push({ route, reply: decodeReply(message) }));
  return host;
}

const ofToken = (h: Host, token: number) =>
  h.messages.filter((m) => 'token' in m.reply && m.reply.token === token);

describe('host process over its pipe', () => {
  it('boots, serves files and a process, and exits on Shutdown', async (t) => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.txt'), 'hello');
    const h = startHost();
    t.after(() => h.child.kill('SIGKILL'));
    await h.until(() => h.controls.length > 0, 'the up Ping');
    assert.deepEqual(h.controls[0], { control: HostControl.Ping, token: 0 });

    h.pipe.sendControl({ control: HostControl.Ping, token: 1234 });
    await h.until(() => h.controls.length > 1, 'the Ping echo');
    assert.deepEqual(h.controls[1], { control: HostControl.Ping, token: 1234 });

    h.pipe.sendControl({ control: HostControl.Init, settings: settingsFor(dir) });
    h.pipe.send(3, encodeProductRequest(AgentType.Otter, 'ReadAllBytes', 10, { path: 'hello.txt' }));
    h.pipe.send(
      4,
      encodeProductRequest(AgentType.Otter, 'GetFileHash', 11, { path: 'hello.txt', algorithm: 'md5' }),
    );
    h.pipe.send(
      5,
      encodeProductRequest(AgentType.Otter, 'StartProcess', 12, {
        fileName: 'echo',
        args: ['from the host'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await h.until(
      () => ofToken(h, 12).some((m) => m.reply.kind === 'event' && m.reply.event === EventCode.Exited),
      'Exited',
    );
    const [read] = ofToken(h, 10);
    assert.equal(read?.route, 3);
    assert.equal(
      Buffer.from(decodeResult('ReadAllBytes', (read!.reply as { body: Buffer }).body).contents).toString(),
      'hello',
    );
    const [hash] = ofToken(h, 11);
    assert.equal(hash?.route, 4);
    assert.equal(
      decodeResult('GetFileHash', (hash!.reply as { body: Buffer }).body).hash,
      '5d41402abc4b2a76b9719d911017c592',
    );

    const proc = ofToken(h, 12);
    assert.equal(proc[0]?.route, 5);
    assert.equal(proc[0]?.reply.kind, 'response');
    assert.ok(proc.slice(1).every((m) => m.route === EVENT_ROUTE));
    const out = proc.find((m) => m.reply.kind === 'event' && m.reply.event === EventCode.Stdout);
    assert.equal(
      Buffer.from(decodeEventBody('Stdout', (out!.reply as { body: Buffer }).body).data).toString(),
      'from the host\n',
    );
    const last = proc.at(-1)!.reply as { event: number; body: Buffer };
    assert.deepEqual(decodeEventBody('Exited', last.body), { exitCode: 0, signal: null });

    // A long-running process is terminated by Shutdown; the host then exits 0.
    h.pipe.send(
      5,
      encodeProductRequest(AgentType.Otter, 'StartProcess', 13, {
        fileName: 'sleep',
        args: ['100'],
        workingDirectory: null,
        environment: {},
        flags: 0,
      }),
    );
    await h.until(() => ofToken(h, 13).length === 1, 'the sleep to start');
    const exited = once(h.child, 'exit');
    h.pipe.sendControl({ control: HostControl.Shutdown });
    const [code] = await exited;
    assert.equal(code, 0);
    const last13 = ofToken(h, 13).at(-1)?.reply as { event: number; body: Buffer };
    assert.equal(last13.event, EventCode.Exited);
    assert.equal(decodeEventBody('Exited', last13.body).exitCode, -1);
  });

  it('a root it cannot use: the host stays up, refuses relative paths naming the root, serves absolute ones (issue 18)', async (t) => {
    const dir = await tempDir();
    await writeFile(join(dir, 'in-the-way'), 'a file where the root should be');
    const root = join(dir, 'in-the-way', 'Otter');
    const h = startHost();
    t.after(() => h.child.kill('SIGKILL'));
    await h.until(() => h.controls.length > 0, 'the up Ping');
    h.pipe.sendControl({
      control: HostControl.Init,
      settings: settingsFor(dir, { rootPath: root, baseDirectory: root }),
    });
    h.pipe.send(3, encodeProductRequest(AgentType.Otter, 'FileExists', 20, { path: 'x.txt' }));
    h.pipe.send(3, encodeProductRequest(AgentType.Otter, 'DirectoryExists', 21, { path: dir }));
    await h.until(() => ofToken(h, 21).length === 1, 'both answers');
    const [relative] = ofToken(h, 20);
    assert.equal(relative?.reply.kind, 'error');
    const e = relative!.reply as { errorKind: string; message: string };
    assert.equal(e.errorKind, 'NotDirectory');
    assert.ok(e.message.includes(root), e.message);
    assert.match(e.message, /root path cannot be used/);
    assert.deepEqual(decodeResult('DirectoryExists', (ofToken(h, 21)[0]!.reply as { body: Buffer }).body), {
      exists: true,
    });
    assert.equal(h.child.exitCode, null, 'still running');
  });

  it('exits when the agent end of the pipe closes', async (t) => {
    const h = startHost();
    t.after(() => h.child.kill('SIGKILL'));
    await h.until(() => h.controls.length > 0, 'the up Ping');
    const exited = once(h.child, 'exit');
    h.pipe.socket.end();
    const [code] = await exited;
    assert.equal(code, 0);
  });
});
