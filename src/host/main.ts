/**
 * Entry point of a product host process. The agent starts one per
 * (session, product type) — or ahead of need, as a warm spare — with a
 * private socket on fd 3: the host pipe (src/protocol/pipe.ts), read and
 * written through the same `PipeConnection` the agent uses at its end.
 *
 * - The host sends a Ping control when it is up (the agent waits for it)
 *   and echoes every Ping the agent sends.
 * - The first control from the agent is Init with the `HostSettings`; a
 *   spare waits for it before it can serve requests.
 * - Requests arrive on their connection's route and are answered there;
 *   process events go out on EVENT_ROUTE.
 * - It tells the agent when its open file handles go from none to some and
 *   back (Handles control): the agent stops a host that holds nothing.
 * - It tells the agent each temp file of an atomic write before creating it
 *   and when it is gone (Temp control): the agent removes what a host killed
 *   mid-write leaves.
 * - Recycle: the session is over and the host held nothing; its state (the
 *   dispatcher) goes and the next Init starts afresh, as in a spare.
 * - Shutdown, the pipe's end, or SIGTERM: every process tree terminated,
 *   every handle closed, then exit.
 */
import { type ControlMessage, HostControl, type Pieces } from '../protocol/index.js';
// The pipe alone: the transport index would also load TLS, the listener and the local sockets (~13 ms of CPU per host boot).
import { openPipeFd } from '../transport/pipe.js';
import { HostDispatcher } from './dispatcher.js';

function main(): void {
  const pipe = openPipeFd(3);
  const socket = pipe.socket;
  // One channel per dispatcher: after Recycle, whatever the old one still finishes is not the next session's.
  const channelFor = (live: { on: boolean }) => ({
    send: (route: number, message: Buffer | Pieces) => !live.on || pipe.send(route, message),
    whenWritable: () => pipe.whenWritable(),
    handles: (open: number) => {
      if (live.on) pipe.sendControl({ control: HostControl.Handles, open });
    },
    temps: {
      // Before the create, and in the kernel's buffer: a kill -9 right after cannot lose it.
      created: (path: string) => pipe.sendControlNow({ control: HostControl.Temp, exists: true, path }),
      removed: (path: string) => {
        pipe.sendControl({ control: HostControl.Temp, exists: false, path });
      },
    },
  });
  let live = { on: true };
  let dispatcher: HostDispatcher | null = null;
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    await dispatcher?.shutdown();
    pipe.releaseWaiters();
    socket.end(() => process.exit(code));
    setTimeout(() => process.exit(code), 2000).unref();
  };

  pipe.on('control', (message: ControlMessage) => {
    switch (message.control) {
      case HostControl.Ping:
        pipe.sendControl(message);
        return;
      case HostControl.Shutdown:
        void shutdown(0);
        return;
      case HostControl.Init:
        if (dispatcher) return; // settings come once
        live = { on: true };
        dispatcher = new HostDispatcher(message.settings, channelFor(live));
        {
          // A root that cannot be used is refused per request, naming it, never a crash at boot (which
          // every request of the product would meet again).
          const problem = dispatcher.files.paths.checkRoot();
          if (problem) process.stderr.write(`outpost host: ${problem.message}\n`);
        }
        return;
      case HostControl.Settings:
        dispatcher?.updateSettings(message.settings);
        return;
      case HostControl.Recycle: {
        // Nothing is held (the agent checked); whatever cleanup remains finishes in the background.
        const old = dispatcher;
        dispatcher = null;
        live.on = false;
        void old?.shutdown();
        return;
      }
    }
  });
  pipe.on('message', (route, message) => {
    if (!dispatcher) {
      process.stderr.write('outpost host: a request arrived before the settings\n');
      void shutdown(2);
      return;
    }
    dispatcher.handle(route, message);
  });
  pipe.on('corrupt', (err) => {
    process.stderr.write(`outpost host: corrupt pipe from the agent: ${err.message}\n`);
    void shutdown(2);
  });

  // Tell the agent we are up (it probes liveness only after this).
  pipe.sendControl({ control: HostControl.Ping, token: 0 });
  // The agent is gone: clean up and leave no orphans.
  socket.on('end', () => void shutdown(0));
  socket.on('error', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`outpost host: uncaught: ${err.stack ?? String(err)}\n`);
    void shutdown(70);
  });
}

main();
