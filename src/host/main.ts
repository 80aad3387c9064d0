/**
 * Entry point of a product host process. The agent starts one per
 * (session, product type) — or ahead of need, as a warm spare — with a
 * private socket on fd 3 carrying length-prefixed frames; the first message
 * is HostControl.Init with the host's settings.
 */
import { mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import {
  encodeControl,
  encodeHostFrame,
  FrameDecoder,
  HOST_BOOT_FRAME_LIMIT,
  HOST_CONTROL,
  HOST_COPY_THRESHOLD,
  HostControl,
  hostFrameHeader,
  NO_ROUTE,
  splitHostFrame,
} from '../protocol/index.js';
import { HostDispatcher } from './dispatcher.js';
import type { HostContext } from './types.js';

function main(): void {
  const pipe = new Socket({ fd: 3, readable: true, writable: true });
  pipe.setNoDelay?.(true);
  let waiters: (() => void)[] = [];
  pipe.on('drain', () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  let corked = false;
  const uncork = () => {
    corked = false;
    pipe.uncork();
  };
  const channel = {
    send: (route: number, message: Buffer) => {
      // Replies made in one tick leave in one writev (corked until the next tick).
      if (!corked) {
        corked = true;
        pipe.cork();
        process.nextTick(uncork);
      }
      if (message.length < HOST_COPY_THRESHOLD) return pipe.write(encodeHostFrame(route, message));
      pipe.write(hostFrameHeader(route, message.length));
      return pipe.write(message);
    },
    whenWritable: () =>
      pipe.writableNeedDrain ? new Promise<void>((resolve) => waiters.push(resolve)) : Promise.resolve(),
  };
  // The agent may start a host before it has a session for it (a warm
  // spare); the settings arrive as the first message, HostControl.Init.
  let dispatcher: HostDispatcher | null = null;
  const decoder = new FrameDecoder(HOST_BOOT_FRAME_LIMIT);
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    await dispatcher?.shutdown();
    pipe.end(() => process.exit(code));
    setTimeout(() => process.exit(code), 2000).unref();
  };

  // Tell the agent we are up (it probes liveness only after this).
  pipe.write(encodeHostFrame(NO_ROUTE, encodeControl(HostControl.Ping, 0)));
  pipe.on('data', (chunk: Buffer) => {
    let frames: Buffer[];
    try {
      frames = decoder.push(chunk);
    } catch (err) {
      process.stderr.write(`outpost host: corrupt pipe from the agent: ${String(err)}\n`);
      void shutdown(2);
      return;
    }
    for (const f of frames) {
      const { route, message } = splitHostFrame(f);
      if (message[0] === HOST_CONTROL && message.length >= 6) {
        const command = message[5];
        if (command === HostControl.Ping) pipe.write(encodeHostFrame(NO_ROUTE, message));
        else if (command === HostControl.Shutdown) void shutdown(0);
        else if (command === HostControl.Init && !dispatcher) {
          const ctx = JSON.parse(message.subarray(6).toString('utf8')) as HostContext;
          mkdirSync(ctx.rootPath, { recursive: true });
          dispatcher = new HostDispatcher(ctx, channel);
        }
        continue;
      }
      if (!dispatcher) {
        process.stderr.write('outpost host: a request arrived before the settings\n');
        void shutdown(2);
        return;
      }
      dispatcher.handle(route, message);
    }
  });
  // The agent is gone: clean up and leave no orphans.
  pipe.on('end', () => void shutdown(0));
  pipe.on('error', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`outpost host: uncaught: ${err.stack ?? String(err)}\n`);
    void shutdown(70);
  });
}

main();
