/** HandshakeAdmission in isolation: cap, queue, eviction of stalled handshakes, refusal. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HandshakeAdmission } from '../../src/agent/admission.js';

function tracker() {
  const started: number[] = [];
  const evicted: number[] = [];
  return {
    started,
    evicted,
    cb: (i: number) => [() => started.push(i), () => evicted.push(i)] as const,
  };
}

describe('HandshakeAdmission', () => {
  it('starts up to max at once, queues a burst of fresh ones, and starts them as slots free', () => {
    const a = new HandshakeAdmission({ max: 2, graceMs: 10_000 });
    const t = tracker();
    const tickets = [0, 1, 2, 3].map((i) => a.admit(...t.cb(i)));
    assert.deepEqual(t.started, [0, 1]);
    assert.equal(a.waitingCount, 2);
    assert.equal(tickets[2]!.state, 'waiting');
    a.done(tickets[0]!);
    assert.deepEqual(t.started, [0, 1, 2]);
    a.done(tickets[3]!); // a waiting connection went away
    a.done(tickets[1]!);
    assert.deepEqual(t.started, [0, 1, 2], 'the departed one is not started');
    assert.equal(a.waitingCount, 0);
    assert.deepEqual(t.evicted, []);
    a.clear();
  });

  it('refuses once the waiting list is full', () => {
    const a = new HandshakeAdmission({ max: 2, graceMs: 10_000 });
    const t = tracker();
    for (let i = 0; i < 4; i++) assert.ok(a.admit(...t.cb(i)));
    assert.equal(a.admit(...t.cb(4)), null);
    assert.equal(a.refused, 1);
    a.clear();
  });

  it('a newcomer evicts the oldest handshake that has run past the grace', async () => {
    const a = new HandshakeAdmission({ max: 2, graceMs: 30 });
    const t = tracker();
    a.admit(...t.cb(0));
    a.admit(...t.cb(1));
    await sleep(50);
    const third = a.admit(...t.cb(2));
    assert.equal(third?.state, 'active');
    assert.deepEqual(t.evicted, [0]);
    assert.deepEqual(t.started, [0, 1, 2]);
    assert.equal(a.evicted, 1);
    a.clear();
  });

  it('waiting connections are started when the running ones pass the grace', async () => {
    const a = new HandshakeAdmission({ max: 2, graceMs: 40 });
    const t = tracker();
    for (let i = 0; i < 4; i++) a.admit(...t.cb(i));
    assert.deepEqual(t.started, [0, 1]);
    await sleep(120);
    assert.deepEqual(t.started, [0, 1, 2, 3]);
    assert.deepEqual(t.evicted, [0, 1]);
    a.clear();
  });
});
