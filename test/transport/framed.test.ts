/**
 * FramedConnection over real TCP on 127.0.0.1, with the codecs of both wire
 * roles (the first socket of a pair is the client, the second the agent):
 * framing both ways, batching, large messages, pause/resume backpressure,
 * protocol errors, the AES replay cache.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  encodeAgentMessage,
  encodeClientMessage,
  frameHeader,
  isProtocolError,
  ReplayCache,
} from '../../src/protocol/index.js';
import { aesCodec, type FrameCodec, FramedConnection, plainCodec } from '../../src/transport/index.js';

let server: Server;
let port: number;
const accepted: Socket[] = [];
const waitingAccept: ((s: Socket) => void)[] = [];

before(async () => {
  server = createServer((s) => {
    const w = waitingAccept.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as import('node:net').AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

async function socketPair(): Promise<[Socket, Socket]> {
  const serverSide = new Promise<Socket>((r) => {
    const s = accepted.shift();
    if (s) r(s);
    else waitingAccept.push(r);
  });
  const client = netConnect({ host: '127.0.0.1', port });
  await new Promise<void>((r) => client.once('connect', () => r()));
  return [client, await serverSide];
}

async function pair(make: () => [FrameCodec, FrameCodec]): Promise<[FramedConnection, FramedConnection]> {
  const [a, b] = await socketPair();
  const [ca, cb] = make();
  return [new FramedConnection(a, ca), new FramedConnection(b, cb)];
}

function collect(c: FramedConnection, n: number): Promise<Buffer[]> {
  const got: Buffer[] = [];
  return new Promise((resolve, reject) => {
    c.on('message', (m) => {
      got.push(Buffer.from(m));
      if (got.length === n) resolve(got);
    });
    c.once('close', (e) => reject(e ?? new Error(`closed after ${got.length} of ${n}`)));
  });
}

const plain = (): [FrameCodec, FrameCodec] => [plainCodec('client'), plainCodec('agent')];
const aes = (): [FrameCodec, FrameCodec] => {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  return [aesCodec('client', key, iv), aesCodec('agent', key, iv, { replay: new ReplayCache(1000) })];
};
/** A client message (`agentType | command | data`) carrying `data`. */
const cm = (data: string | Buffer) => encodeClientMessage(1, 2, Buffer.from(data));
/** An agent message (`command | data`) carrying `data`. */
const am = (data: string | Buffer) => encodeAgentMessage(100, Buffer.from(data));

for (const [name, make] of [
  ['plain', plain],
  ['aes', aes],
] as const) {
  describe(`FramedConnection (${name})`, () => {
    it('carries many small and a few large messages both ways, in order', async () => {
      const [a, b] = await pair(make);
      const messages = [
        ...Array.from({ length: 1000 }, (_, i) => cm(`message ${i}`)),
        cm(randomBytes(100_000)),
        cm(randomBytes(3 * 1024 * 1024)),
        cm(''),
      ];
      const toB = collect(b, messages.length);
      const toA = collect(a, 3);
      for (const m of messages) a.send(m);
      b.send(am('x'));
      b.send(am(randomBytes(70_000)));
      b.send(am(''));
      const got = await toB;
      assert.equal(got.length, messages.length);
      for (const [i, m] of messages.entries()) assert.ok(got[i]!.equals(m), `message ${i}`);
      const back = await toA;
      assert.ok(back[0]!.equals(am('x')));
      assert.equal(back[1]!.length, 4 + 70_000);
      assert.equal(back[2]!.length, 4, 'a message with no data is its header');
      a.destroy();
      b.destroy();
    });

    it('pause() stops delivery and makes the sender see backpressure; resume() delivers everything', async () => {
      const [a, b] = await pair(make);
      const received: number[] = [];
      b.on('message', (m) => received.push(m.readUInt32LE(5)));
      b.pause();
      const chunk = Buffer.alloc(64 * 1024);
      let i = 0;
      let full = false;
      // Send until the writer stays blocked (kernel buffers and the high-water mark are full);
      // bounded at 2000 messages of 64 KiB.
      while (i < 2000) {
        const m = Buffer.from(chunk);
        m.writeUInt32LE(i++, 5);
        if (a.send(m)) continue;
        const drained = await Promise.race([once(a, 'drain').then(() => true), sleep(300).then(() => false)]);
        if (!drained) {
          full = true;
          break;
        }
      }
      assert.ok(full, 'send() returned false while the reader was paused');
      assert.ok(a.writableNeedDrain);
      await sleep(50);
      assert.equal(received.length, 0, 'nothing delivered while paused');
      const drained = new Promise<void>((r) => a.once('drain', () => r()));
      b.resume();
      await drained;
      while (received.length < i) await sleep(5);
      assert.deepEqual(
        received,
        Array.from({ length: i }, (_, k) => k),
      );
      a.destroy();
      b.destroy();
    });

    it('pausing inside a message listener holds the rest of the batch', async () => {
      const [a, b] = await pair(make);
      const got: string[] = [];
      b.on('message', (m) => {
        got.push(m.subarray(5).toString());
        if (got.length === 2) b.pause();
      });
      for (let k = 0; k < 5; k++) a.send(cm(`m${k}`));
      await sleep(100);
      assert.deepEqual(got, ['m0', 'm1']);
      b.resume();
      await sleep(50);
      assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4']);
      a.destroy();
      b.destroy();
    });

    it('close() flushes queued messages before ending', async () => {
      const [a, b] = await pair(make);
      const got = collect(b, 3);
      a.send(cm('1'));
      a.send(cm('2'));
      a.send(cm(randomBytes(200_000)));
      a.close();
      assert.equal(a.send(cm('late')), false, 'send after close is refused');
      assert.equal((await got).length, 3);
      const closeErr = await new Promise((r) => (a.closed ? r(undefined) : a.once('close', r)));
      assert.equal(closeErr, undefined);
      b.destroy();
    });
  });
}

describe('FramedConnection errors', () => {
  it('a frame over the limit destroys that connection only, with a ProtocolError', async () => {
    const [a1, b1] = await socketPair();
    const [a2, b2] = await socketPair();
    const victim = new FramedConnection(b1, plainCodec('agent', 65536));
    const other = new FramedConnection(b2, plainCodec('agent', 65536));
    const sender2 = new FramedConnection(a2, plainCodec('client'));
    victim.on('message', () => assert.fail('no message expected'));
    const closed = new Promise<Error | undefined>((r) => victim.once('close', r));
    a1.write(frameHeader(65537));
    const err = await closed;
    assert.ok(isProtocolError(err), String(err));
    assert.equal(err.code, 'LENGTH_LIMIT');
    const got = collect(other, 1);
    sender2.send(cm('still here'));
    assert.ok((await got)[0]!.equals(cm('still here')));
    a1.destroy();
    sender2.destroy();
    other.destroy();
  });

  it('an undecryptable AES frame closes the connection with DECRYPT_FAILED', async () => {
    const [a, b] = await socketPair();
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const sender = new FramedConnection(a, aesCodec('client', randomBytes(16), iv));
    const receiver = new FramedConnection(b, aesCodec('agent', key, iv));
    const closed = new Promise<Error | undefined>((r) => receiver.once('close', r));
    receiver.on('message', () => {});
    // Several frames: one could pass the padding check by chance, not all.
    for (let k = 0; k < 4; k++) sender.send(cm('hello'));
    const err = await closed;
    assert.ok(isProtocolError(err) && err.code === 'DECRYPT_FAILED', String(err));
    sender.destroy();
  });

  it('refuses to send a message shorter than its header', async () => {
    const [a, b] = await socketPair();
    const c = new FramedConnection(a, plainCodec('client'));
    assert.throws(() => c.send(Buffer.alloc(0)), RangeError);
    assert.throws(() => c.send(Buffer.alloc(4)), RangeError, 'a client message has a 5-byte header');
    c.destroy();
    b.destroy();
  });

  it('delivers nothing before a message listener is attached', async () => {
    const [a, b] = await socketPair();
    const sender = new FramedConnection(a, plainCodec('client'));
    const receiver = new FramedConnection(b, plainCodec('agent'));
    sender.send(cm('early'));
    await sleep(50);
    const got = collect(receiver, 1);
    assert.ok((await got)[0]!.equals(cm('early')));
    sender.destroy();
    receiver.destroy();
  });

  it('an AES frame seen before, on any connection sharing the replay cache, closes with REPLAYED', async () => {
    const key = randomBytes(32);
    const replay = new ReplayCache(1000);
    const [a1, b1] = await socketPair();
    const [a2, b2] = await socketPair();
    const iv1 = randomBytes(16);
    const first = new FramedConnection(b1, aesCodec('agent', key, iv1, { replay }));
    // Capture the bytes of one frame as the client writes them.
    const captured: Buffer[] = [];
    const write = a1.write.bind(a1);
    a1.write = ((chunk: Buffer, ...rest: never[]) => {
      captured.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    }) as typeof a1.write;
    const client = new FramedConnection(a1, aesCodec('client', key, iv1));
    const got = collect(first, 1);
    client.send(cm('pay me once'));
    assert.ok((await got)[0]!.equals(cm('pay me once')));
    const second = new FramedConnection(b2, aesCodec('agent', key, randomBytes(16), { replay }));
    second.on('message', () => assert.fail('a replayed frame must not be delivered'));
    const closed = new Promise<Error | undefined>((r) => second.once('close', r));
    a2.write(Buffer.concat(captured));
    const err = await closed;
    assert.ok(isProtocolError(err) && err.code === 'REPLAYED', String(err));
    assert.equal(replay.hits, 1);
    client.destroy();
    first.destroy();
    a2.destroy();
  });
});
