/**
 * Entry point of a product host process. The agent starts one per
 * (session, product type) with its settings in OUTPOST_HOST_CONFIG (JSON) and
 * a private socket on fd 3 carrying length-prefixed frames.
 */
import { mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import {
  encodeControl,
  encodeHostFrame,
  FrameDecoder,
  HOST_CONTROL,
  HostControl,
  hostFrameLimit,
  NO_ROUTE,
  splitHostFrame,
} from '../protocol/index.js';
import { HostDispatcher } from './dispatcher.js';
import type { HostContext } from './types.js';

export const HOST_CONFIG_ENV = 'OUTPOST_HOST_CONFIG';

function readContext(): HostContext {
  const raw = process.env[HOST_CONFIG_ENV];
  if (!raw) throw new Error(`${HOST_CONFIG_ENV} is not set: this program is started by the Outpost agent`);
  const c = JSON.parse(raw) as HostContext;
  delete process.env[HOST_CONFIG_ENV];
  return c;
}

function main(): void {
  const ctx = readContext();
  mkdirSync(ctx.rootPath, { recursive: true });
  const pipe = new Socket({ fd: 3, readable: true, writable: true });
  pipe.setNoDelay?.(true);
  let waiters: (() => void)[] = [];
  pipe.on('drain', () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  const channel = {
    send: (route: number, message: Buffer) => pipe.write(encodeHostFrame(route, message)),
    whenWritable: () =>
      pipe.writableNeedDrain ? new Promise<void>((resolve) => waiters.push(resolve)) : Promise.resolve(),
  };
  const dispatcher = new HostDispatcher(ctx, channel);
  const decoder = new FrameDecoder(hostFrameLimit(ctx.maxMessageSize));
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    await dispatcher.shutdown();
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
        continue;
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
