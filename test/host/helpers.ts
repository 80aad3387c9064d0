/**
 * Shared set-up for the host tests: settings for a temp directory, a
 * HostDispatcher driven directly (`host.call(name, args)`), a channel that
 * records what the dispatcher sends (for the byte-level tests), and the
 * `rejectsKind` assertion.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostDispatcher, type HostDispatcherOptions, type ReplyChannel } from '../../src/host/dispatcher.js';
import type { FileServiceHooks } from '../../src/host/files.js';
import { type HostContext, HostError } from '../../src/host/types.js';
import { AgentType, type ErrorKindName, joinPieces, type Pieces } from '../../src/protocol/index.js';

/** Settings for a host whose root, base directory and only allowed root is `dir`. */
export function settingsFor(dir: string, over: Partial<HostContext> = {}): HostContext {
  return {
    agentType: AgentType.Otter,
    rootPath: dir,
    baseDirectory: dir,
    allowedRoots: [dir],
    maxMessageSize: 1024 * 1024,
    maxOpenFiles: 8,
    maxProcesses: 4,
    extensionPath: null,
    ...over,
  };
}

/** A channel that keeps every message sent, by route. */
export class RecordingChannel implements ReplyChannel {
  readonly sent: { route: number; message: Buffer }[] = [];
  private waiters: (() => void)[] = [];
  send(route: number, message: Buffer | Pieces): boolean {
    this.sent.push({ route, message: Buffer.from(joinPieces(message)) });
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
    return true;
  }
  whenWritable(): Promise<void> {
    return Promise.resolve();
  }
  /** Resolves once `predicate` holds for the messages sent so far. */
  async until(predicate: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the host to send');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50).unref();
      });
    }
  }
}

/** Temp directories made by {@link tempHost}, removed by {@link cleanup}. */
const made: string[] = [];

export async function tempDir(prefix = 'outpost-host-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function cleanup(): Promise<void> {
  for (const d of made.splice(0)) await rm(d, { recursive: true, force: true });
}

/** A host on a fresh temp dir (its only allowed root), driven through `svc.call`. */
export async function tempHost(
  over: Partial<HostContext> = {},
  hooks: FileServiceHooks = {},
  options: HostDispatcherOptions = {},
  base?: string,
) {
  const dir = base ? await mkdtemp(join(base, 'outpost-host-')) : await tempDir();
  if (base) made.push(dir);
  const ctx = settingsFor(dir, over);
  const channel = new RecordingChannel();
  const svc = new HostDispatcher(ctx, channel, { fileHooks: hooks, ...options });
  return { dir, ctx, svc, channel };
}

export async function rejectsKind(p: Promise<unknown>, kind: ErrorKindName, re?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof HostError, `expected a HostError, got ${String(e)}`);
    assert.equal(e.kind, kind, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}
