/** Remote path arithmetic for POSIX and Windows agents (pure). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkPath, RemotePaths, TEMP_SUFFIX } from '../../src/client/paths.js';

describe('RemotePaths', () => {
  it('joins, splits and names temp files on a POSIX agent', () => {
    const p = new RemotePaths('/');
    assert.equal(p.join('/srv/app', 'a/b.txt'), '/srv/app/a/b.txt');
    assert.equal(p.join('/srv/app/', 'x'), '/srv/app/x');
    assert.equal(p.join('/', 'x'), '/x');
    assert.equal(p.join('/srv', ''), '/srv');
    assert.equal(p.dirname('/srv/app/f'), '/srv/app');
    assert.equal(p.dirname('/f'), '/');
    assert.equal(p.dirname('f'), '');
    assert.equal(p.basename('/srv/app/f.txt'), 'f.txt');
    const t = p.tempFor('/srv/app/f.txt');
    assert.match(t, /^\/srv\/app\/\.f\.txt\.[0-9a-f]{12}\.outpost-tmp$/);
    assert.ok(t.endsWith(TEMP_SUFFIX));
    assert.notEqual(p.tempFor('/srv/f'), p.tempFor('/srv/f'), 'temp names are unique');
    assert.match(p.tempFor('rel'), /^\.rel\.[0-9a-f]{12}\.outpost-tmp$/);
  });

  it('accepts both separators on a Windows agent and joins with a backslash', () => {
    const p = new RemotePaths('\\');
    assert.equal(p.join('C:\\app', 'a/b.txt'), 'C:\\app\\a\\b.txt');
    assert.equal(p.join('C:\\app\\', 'x'), 'C:\\app\\x');
    assert.equal(p.dirname('C:\\app/sub\\f'), 'C:\\app/sub');
    assert.equal(p.basename('C:\\app/sub\\f.txt'), 'f.txt');
    assert.match(p.tempFor('C:\\app\\f'), /^C:\\app\\\.f\.[0-9a-f]{12}\.outpost-tmp$/);
  });

  it('checkPath explains what is wrong', () => {
    assert.throws(() => checkPath(''), /non-empty string, got an empty string/);
    assert.throws(() => checkPath(3, 'source'), /source must be a non-empty string, got number/);
    assert.throws(() => checkPath('a\0b'), /NUL/);
    assert.doesNotThrow(() => checkPath('/ok'));
  });
});
