/** The session registry: grant, resume, principals, detach timeout, idle timeout, close. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  aesPrincipal,
  SessionLimitError,
  SessionMismatchError,
  SessionRegistry,
} from '../../src/agent/sessions.js';

function conn() {
  return {
    closed: 0,
    close() {
      this.closed++;
    },
  };
}

describe('SessionRegistry', () => {
  it('grants new random positive IDs, a live one as asked, and attaches the same principal only', () => {
    const r = new SessionRegistry({ idleTimeoutMs: 60_000, detachedTimeoutMs: 60_000 });
    const id = r.proposeId(0);
    assert.ok(id > 0 && id <= 0x7fffffff);
    assert.equal(r.size, 0, 'proposing creates nothing');
    const a = conn();
    const { session, resumed } = r.attach(id, 'p', a, '10.0.0.1');
    assert.equal(resumed, false);
    assert.equal(session.remote, '10.0.0.1');
    assert.equal(
      r.proposeId(id),
      id,
      'a live session ID is granted (whose it is, is checked at the first frame)',
    );
    assert.notEqual(r.proposeId(999), 999, 'unknown IDs are not granted');
    assert.notEqual(r.proposeId(-5), -5);
    assert.equal(r.belongsToOther(id, 'q'), true);
    assert.equal(r.belongsToOther(id, 'p'), false);
    assert.equal(r.belongsToOther(999, 'q'), false);
    assert.throws(() => r.attach(id, 'q', conn()), SessionMismatchError);
    const again = r.attach(id, 'p', conn());
    assert.equal(again.resumed, true);
    assert.equal(again.session, session);
    assert.equal(session.connections.size, 2);
    r.dispose();
    assert.equal(a.closed, 1);
  });

  it('closes a detached session after the timeout unless it is resumed', async () => {
    const r = new SessionRegistry({ idleTimeoutMs: 60_000, detachedTimeoutMs: 50 });
    const closed: string[] = [];
    r.on('close', (s, reason) => closed.push(`${s.id}:${reason}`));
    const c1 = conn();
    const one = r.attach(r.proposeId(0), 'p', c1).session;
    const c2 = conn();
    const two = r.attach(r.proposeId(0), 'p', c2).session;
    r.detach(one, c1);
    r.detach(two, c2);
    // Resumed in time: at once, so no timer can fire in between however loaded the machine is.
    r.attach(two.id, 'p', conn());
    await sleep(300);
    assert.deepEqual(closed, [`${one.id}:detached timeout`]);
    assert.equal(r.get(one.id), undefined);
    assert.ok(r.get(two.id));
    r.dispose();
  });

  it('closes idle sessions unless held', async () => {
    const r = new SessionRegistry({ idleTimeoutMs: 100, detachedTimeoutMs: 60_000 });
    const a = conn();
    const idle = r.attach(r.proposeId(0), 'p', a).session;
    const busy = r.attach(r.proposeId(0), 'p', conn()).session;
    const release = r.hold(busy);
    await sleep(450);
    assert.equal(idle.closed, true);
    assert.equal(a.closed, 1, 'its connections are closed');
    assert.equal(busy.closed, false);
    release();
    r.dispose();
  });

  it('close() ends a session at once and closes its connections', () => {
    const r = new SessionRegistry({ idleTimeoutMs: 60_000, detachedTimeoutMs: 60_000 });
    const a = conn();
    const s = r.attach(r.proposeId(0), 'p', a).session;
    r.close(s, 'CloseSession');
    assert.equal(a.closed, 1);
    assert.equal(r.size, 0);
    assert.notEqual(r.proposeId(s.id), s.id);
    r.dispose();
  });

  it('beyond maxSessions ends the longest-detached idle session, never a busy or attached one', () => {
    const r = new SessionRegistry({ idleTimeoutMs: 60_000, detachedTimeoutMs: 60_000, maxSessions: 2 });
    const c = conn();
    const first = r.attach(r.proposeId(0), 'p', c).session;
    r.detach(first, c);
    r.attach(r.proposeId(0), 'p', conn());
    const third = r.attach(r.proposeId(0), 'p', conn()).session;
    assert.equal(r.size, 2);
    assert.equal(first.closed, true);
    // Now one attached and one detached but busy: a newcomer is refused.
    const tc = [...third.connections][0]!;
    r.hold(third);
    r.detach(third, tc);
    assert.throws(() => r.attach(r.proposeId(0), 'p', conn()), SessionLimitError);
    assert.equal(third.closed, false);
    r.dispose();
  });

  it('derives the AES principal from the key without revealing it', () => {
    const key = Buffer.alloc(32, 7);
    const p = aesPrincipal(key);
    assert.match(p, /^aes:[0-9a-f]{16}$/);
    assert.ok(!p.includes(key.toString('hex').slice(0, 8)));
    assert.notEqual(p, aesPrincipal(Buffer.alloc(32, 8)));
  });
});
