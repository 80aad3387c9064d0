/**
 * Clearer messages (issue 17, Deliver 5), in process: a port where another
 * server answers is named at once; an AccessDenied on an atomic write's temp
 * file names the user's path; the preserve-root refusal gets no hint about
 * AllowedRoots.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { describeError } from '../../src/cli/errors.js';
import { AgentClient, RemoteError } from '../../src/client/index.js';

let ssh: Server;
let port = 0;
before(async () => {
  ssh = createServer((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n'));
  await new Promise<void>((r) => ssh.listen(0, '127.0.0.1', r));
  port = (ssh.address() as import('node:net').AddressInfo).port;
});
after(() => new Promise<void>((r) => ssh.close(() => r())));

describe('messages', () => {
  it('a port where another server speaks first is "not an Inedo agent", at once', async () => {
    const err = await AgentClient.connect({ host: '127.0.0.1', port, mode: 'none', timeoutMs: 60_000 }).then(
      () => assert.fail('connected'),
      (e: Error) => e,
    );
    const d = describeError(err);
    assert.equal(d.exitCode, 2);
    assert.match(d.message, /is not an Inedo agent: its first byte 0x53 \("S"\) is no handshake reply/);
    assert.match(d.message, /; check the port/);
    assert.doesNotMatch(d.message, /allow more time/);
  });

  it('AccessDenied on a temp file names the target; preserve-root gives no AllowedRoots hint', () => {
    const temp = new RemoteError(
      'AccessDenied',
      '/srv/app/.x.txt.0a1b2c3d4e5f.outpost-tmp: permission denied',
      'WriteAllBytes',
      {
        path: '/srv/app/x.txt',
      },
    );
    const t = describeError(temp).message;
    assert.match(t, /^AccessDenied: cannot write \/srv\/app\/x\.txt /);
    assert.doesNotMatch(t, /outpost-tmp/);
    const root = new RemoteError(
      'AccessDenied',
      '/: refusing to delete a file-system root',
      'DeleteDirectory',
    );
    const r = describeError(root).message;
    assert.match(r, /like rm --preserve-root/);
    assert.doesNotMatch(r, /outside the agent's AllowedRoots/);
  });
});
