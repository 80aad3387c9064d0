/**
 * HandshakeCaps on its own (the socket-level tests are in caps.test.ts):
 * a newcomer is always counted; past the per-address cap its address's
 * oldest is evicted, past the global cap the oldest of the busiest address.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HandshakeCaps } from '../../src/agent/admission.js';

function admitter(caps: HandshakeCaps) {
  const evicted: string[] = [];
  const admit = (address: string, name: string) => caps.admit(address, () => evicted.push(name));
  return { evicted, admit };
}

describe('HandshakeCaps', () => {
  it('past the per-address cap, that address loses its oldest; others are untouched', () => {
    const caps = new HandshakeCaps({ maxTotal: 100, maxPerAddress: 2 });
    const { evicted, admit } = admitter(caps);
    admit('a', 'a1');
    admit('b', 'b1');
    admit('a', 'a2');
    admit('a', 'a3');
    assert.deepEqual(evicted, ['a1']);
    assert.equal(caps.countOf('a'), 2);
    assert.equal(caps.countOf('b'), 1);
    assert.equal(caps.count, 3);
  });

  it('past the global cap, the address with the most loses its oldest', () => {
    const caps = new HandshakeCaps({ maxTotal: 4, maxPerAddress: 10 });
    const { evicted, admit } = admitter(caps);
    admit('flood', 'f1');
    admit('flood', 'f2');
    admit('x', 'x1');
    admit('flood', 'f3');
    admit('good', 'g1');
    assert.deepEqual(evicted, ['f1']);
    admit('y', 'y1');
    assert.deepEqual(evicted, ['f1', 'f2']);
    assert.equal(caps.count, 4);
  });

  it('released tickets stop counting; releasing twice or after eviction is harmless', () => {
    const caps = new HandshakeCaps({ maxTotal: 2, maxPerAddress: 2 });
    const { evicted, admit } = admitter(caps);
    const t1 = admit('a', 'a1');
    const t2 = admit('a', 'a2');
    caps.release(t1);
    caps.release(t1);
    assert.equal(caps.count, 1);
    admit('b', 'b1');
    assert.deepEqual(evicted, []);
    admit('c', 'c1');
    assert.deepEqual(evicted, ['a2']);
    assert.equal(t2.done, true);
    caps.release(t2);
    assert.equal(caps.count, 2);
    assert.equal(caps.evicted, 1);
  });
});
