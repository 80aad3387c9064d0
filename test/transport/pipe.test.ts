/**
 * The host pipe end's urgent control (issue 18): `sendControlNow` hands its
 * frame to the kernel at once — null when it is there on return — and
 * otherwise resolves only once the frames queued before it have left, so a
 * host creates a temp file only after the agent can no longer miss its name.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type ControlMessage, HostControl } from '../../src/protocol/index.js';
import { PipeConnection } from '../../src/transport/index.js';

let server: Server;
let near: PipeConnection;
let far: PipeConnection;
before(async () => {
  server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection');
  const { connect } = await import('node:net');
  const client = connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = (await accepted) as [Socket];
  near = new PipeConnection(client);
  far = new PipeConnection(peer);
});
after(() => {
  near.socket.destroy();
  far.socket.destroy();
  server.close();
});

const temp = (path: string): ControlMessage => ({ control: HostControl.Temp, exists: true, path });

describe('PipeConnection.sendControlNow', () => {
  it('is in the kernel on return when nothing is queued; the other end decodes it', async () => {
    const got = once(far, 'control');
    assert.equal(near.sendControlNow(temp('/x/.a.0123456789ab.tmp')), null);
    assert.equal(near.socket.writableLength, 0);
    assert.deepEqual((await got)[0], temp('/x/.a.0123456789ab.tmp'));
  });

  it('behind queued frames: a promise that resolves once the peer has read them', async () => {
    far.pause();
    // More than any loopback socket's kernel buffers hold (one buffer, sent 64 times without a copy).
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < 64; i++) near.send(1, big);
    const controls: ControlMessage[] = [];
    far.on('control', (m) => controls.push(m));
    const pending = near.sendControlNow(temp('/x/.b.0123456789ab.tmp'));
    assert.ok(pending, 'not yet in the kernel');
    let resolved = false;
    void pending.then(() => {
      resolved = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(resolved, false, 'still queued while the peer reads nothing');
    far.resume();
    await pending;
    await new Promise<void>((r) => {
      const check = () => (controls.length > 0 ? r() : setTimeout(check, 10));
      check();
    });
    assert.deepEqual(controls, [temp('/x/.b.0123456789ab.tmp')]);
  });
});
