/**
 * Meta commands (agent type 0), answered by the agent itself (PROTOCOL.md
 * §5.1), through a handler table typed by the catalog's meta command names.
 * The agent calls them one at a time per connection, so replies leave in
 * the order the requests came (agent.ts).
 *
 *   1 UpdateAgent       byte targetType | array<UpdateFile> binaries | array<UpdateFile> extensions
 *                       → nothing on success; MetaError on failure. Files go to
 *                       ExtensionCachePath/<instance>/<Product>/{binaries,extensions},
 *                       each atomically (temp file, fsync, rename)
 *   2 GetAgentRootPath  byte agentType → string path (created on demand)
 *   3 Ping              int32 token → int32 token
 *   4 GetAgentInfo      — → AgentInfo
 *   5 CloseSession      — → (empty), then the session ends and the connection closes
 *
 * Extensions (docs/PROTOCOL.md):
 *   6 SetSessionOptions   int32 detachedTimeoutMs → int32 granted (≤ MaxDetachedSessionTimeout)
 *   7 ListAgentProcesses  — → array<AgentProcess>: every session of the caller's principal
 *   8 KillProcess         int32 sessionId | int32 token | bool entireTree → (empty)
 *  10 DetachProcess       int32 token → (empty): its output waits for AttachProcess
 *  11 AttachProcess       int32 token → (empty), then its kept and live output here
 *
 * A failure is `MetaError(requestCommand, message)`; the connection stays.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { isIP } from 'node:net';
import { arch, hostname, release } from 'node:os';
import { join } from 'node:path';
import {
  dateToTicks,
  encodeMetaError,
  encodeMetaReply,
  isProductType,
  META_COMMANDS,
  type MetaCommand,
  PRODUCT_NAMES,
  PROTOCOL_VERSION,
  type RequestOf,
  SUPPORTED_AGENT_TYPES,
  type UpdateFile,
} from '../protocol/index.js';
import type { FramedConnection } from '../transport/index.js';
import { MODE_BYTES } from '../transport/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './log.js';
import { describeAgentTypes, type ProcessControl, type ProductRouter } from './product.js';
import type { Session, SessionRegistry } from './sessions.js';
import { AGENT_VERSION } from './version.js';

/** A failure answered with MetaError (its message goes to the client). */
export class MetaFailure extends Error {
  override readonly name = 'MetaFailure';
}

export interface MetaDeps {
  config: AgentConfig;
  sessions: SessionRegistry;
  logger: Logger;
  /** The product side, for the process extensions (absent: they answer what is missing). */
  router?: ProductRouter;
}

/** What a meta handler may use of the connection it answers. */
export interface MetaContext {
  session: Session;
  /** Remote address of the connection (IPv4-mapped IPv6 as IPv4). */
  remote: string;
  /** Sends a reply on the connection. */
  reply(message: Buffer): void;
  /** The connection itself (AttachProcess moves a process's output to it). */
  connection?: FramedConnection;
}

type MetaHandlerFn<N extends MetaCommand> = (args: RequestOf<N>, ctx: MetaContext) => void | Promise<void>;
type MetaHandlers = { readonly [N in MetaCommand]: MetaHandlerFn<N> };

const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const MAX_NAME_BYTES = 255;

/**
 * Why `name` is not safe as a single file name, or null if it is. The
 * contract refuses a path separator, `..` and absolute paths; Outpost also
 * refuses, whatever its OS (so behaviour does not depend on it): empty and
 * ".", ":" (drive letters, NTFS streams), control characters (NUL
 * included), a trailing dot or space (Windows drops them), Windows device
 * names, more than 255 UTF-8 bytes. A leading dot is allowed.
 */
export function unsafeNameReason(name: string): string | null {
  if (name === '') return 'is empty';
  if (name === '.' || name === '..') return `must not be "${name}"`;
  if (/[/\\:]/.test(name)) return 'must not contain "/", "\\" or ":" (a path, not a file name)';
  if (/[\x00-\x1f\x7f]/.test(name)) return 'must not contain control characters';
  if (/[. ]$/.test(name)) return 'must not end with a dot or a space';
  if (WINDOWS_DEVICE.test(name)) return 'is a reserved device name on Windows';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  return null;
}

/**
 * The UpdateAgent instance directory for a client address (§5.1): dotted
 * IPv4 (an IPv4-mapped IPv6 address as IPv4), else compressed IPv6 with
 * each ':' replaced by '-'.
 */
export function instanceName(address: string): string {
  const zone = address.indexOf('%');
  const bare = zone >= 0 ? address.slice(0, zone) : address;
  if (isIP(bare) === 4) return bare;
  if (isIP(bare) !== 6) return bare.replace(/[^0-9A-Za-z.-]/g, '-');
  // The URL parser writes IPv6 compressed and lower-case (RFC 5952).
  const compressed = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (mapped) {
    const hi = Number.parseInt(mapped[1]!, 16);
    const lo = Number.parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return compressed.replaceAll(':', '-');
}

export class MetaHandler {
  private readonly startedAt = performance.now();
  private readonly handlers: MetaHandlers = {
    UpdateAgent: (args, ctx) => this.updateAgent(args, ctx),
    GetAgentRootPath: async (args, ctx) => {
      if (!isProductType(args.agentType))
        throw new MetaFailure(
          `unknown agent type ${args.agentType}: expected one of ${describeAgentTypes(false)}`,
        );
      const path = this.deps.config.rootPaths[args.agentType];
      await mkdir(path, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
        throw new MetaFailure(`cannot create ${path} (${err.code ?? err.message})`);
      });
      ctx.reply(encodeMetaReply('GetAgentRootPath', { path }));
    },
    Ping: (args, ctx) => ctx.reply(encodeMetaReply('Ping', { token: args.token })),
    GetAgentInfo: (_args, ctx) =>
      ctx.reply(
        encodeMetaReply('GetAgentInfo', {
          product: 'Outpost',
          version: AGENT_VERSION,
          protocolVersion: PROTOCOL_VERSION,
          hostName: hostname(),
          platform: process.platform,
          osRelease: release(),
          arch: arch(),
          processId: process.pid,
          uptimeMs: Math.floor(performance.now() - this.startedAt),
          supportedAgentTypes: Buffer.from(SUPPORTED_AGENT_TYPES),
          encryptionMode: MODE_BYTES[this.deps.config.listener.encryption.mode],
        }),
      ),
    CloseSession: (_args, ctx) => {
      ctx.reply(encodeMetaReply('CloseSession', {}));
      // Closes every connection of the session gracefully: the reply is flushed first.
      this.deps.sessions.close(ctx.session, 'closed by the client (CloseSession)');
    },
    SetSessionOptions: (args, ctx) => {
      if (args.detachedTimeoutMs < 1)
        throw new MetaFailure(`detachedTimeoutMs ${args.detachedTimeoutMs} must be at least 1 ms`);
      const granted = Math.min(args.detachedTimeoutMs, this.deps.config.maxDetachedSessionTimeoutMs);
      ctx.session.detachedTimeoutMs = granted;
      ctx.reply(encodeMetaReply('SetSessionOptions', { detachedTimeoutMs: granted }));
    },
    // Scope: the sessions of the caller's principal only (the same key in mode aes, the same address otherwise).
    ListAgentProcesses: (_args, ctx) => {
      const control = this.control();
      const processes = [];
      for (const s of this.deps.sessions)
        if (s.principal === ctx.session.principal && !s.closed)
          for (const p of control.processes(s.id))
            processes.push({
              sessionId: s.id,
              token: p.token,
              pid: p.pid,
              command: p.command,
              startedUtc: dateToTicks(p.startedAt),
              running: p.running,
              detached: p.detached,
              attached: p.attached,
            });
      ctx.reply(encodeMetaReply('ListAgentProcesses', { processes }));
    },
    KillProcess: (args, ctx) => {
      const control = this.control();
      const s = this.deps.sessions.get(args.sessionId);
      // Another principal's session looks the same as none.
      if (
        !s ||
        s.closed ||
        s.principal !== ctx.session.principal ||
        !control.kill(s.id, args.token, args.entireTree)
      )
        throw new MetaFailure(
          `no running process ${args.sessionId}.${args.token} of yours; list them with ListAgentProcesses (outpost ps)`,
        );
      this.deps.logger.info(
        { sessionId: s.id, token: args.token, tree: args.entireTree, remote: ctx.remote },
        'process killed on request (KillProcess)',
      );
      ctx.reply(encodeMetaReply('KillProcess', {}));
    },
    DetachProcess: (args, ctx) => {
      this.control().detachToken(ctx.session, args.token);
      ctx.reply(encodeMetaReply('DetachProcess', {}));
    },
    AttachProcess: (args, ctx) => {
      const control = this.control();
      if (!ctx.connection || !control.processes(ctx.session.id).some((p) => p.token === args.token))
        throw new MetaFailure(
          `session ${ctx.session.id} has no process with token ${args.token} (it ended and its output was delivered, or it never ran)`,
        );
      // The reply first, then what was kept, then live output.
      ctx.reply(encodeMetaReply('AttachProcess', {}));
      control.attachToken(ctx.session.id, ctx.connection, args.token);
    },
  };

  private control(): ProcessControl {
    const c = this.deps.router?.processControl;
    if (!c) throw new MetaFailure('this agent serves no processes (no product host)');
    return c;
  }

  constructor(private readonly deps: MetaDeps) {}

  /**
   * Answers one meta request (arguments already decoded); never throws or
   * rejects. Synchronous handlers (Ping, GetAgentInfo) answer without a promise.
   */
  handle<N extends MetaCommand>(name: N, args: RequestOf<N>, ctx: MetaContext): void | Promise<void> {
    const handler: MetaHandlerFn<N> = this.handlers[name];
    let result: void | Promise<void>;
    try {
      result = handler(args, ctx);
    } catch (err) {
      this.fail(name, err, ctx);
      return;
    }
    if (result instanceof Promise) return result.catch((err: unknown) => this.fail(name, err, ctx));
  }

  private fail(name: MetaCommand, err: unknown, ctx: MetaContext): void {
    const code = META_COMMANDS[name].code;
    if (err instanceof MetaFailure) {
      ctx.reply(encodeMetaError(code, `${name}: ${err.message}`));
      return;
    }
    this.deps.logger.error({ err, command: name }, 'meta command failed');
    ctx.reply(encodeMetaError(code, `${name} failed inside the agent: ${(err as Error).message}`));
  }

  private async updateAgent(args: RequestOf<'UpdateAgent'>, ctx: MetaContext): Promise<void> {
    if (!isProductType(args.targetType))
      throw new MetaFailure(
        `unknown target type ${args.targetType}: expected one of ${describeAgentTypes(false)}`,
      );
    checkNames(args.binaries, 'binaries');
    checkNames(args.extensions, 'extensions');
    const base = join(
      this.deps.config.extensionCachePath,
      instanceName(ctx.remote),
      PRODUCT_NAMES[args.targetType],
    );
    for (const [folder, files] of [
      ['binaries', args.binaries],
      ['extensions', args.extensions],
    ] as const) {
      if (files.length === 0) continue;
      const dir = join(base, folder);
      try {
        await mkdir(dir, { recursive: true });
        for (const f of files) await writeAtomically(dir, f.fileName, f.contents, f.lastWriteUtc);
        await syncDirectory(dir);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new MetaFailure(`cannot store files in ${dir} (${e.code ?? e.message})`);
      }
    }
    this.deps.logger.info(
      { remote: ctx.remote, dir: base, binaries: args.binaries.length, extensions: args.extensions.length },
      'UpdateAgent stored files',
    );
  }
}

/** Refuses unsafe or repeated names before anything is written. */
function checkNames(files: readonly UpdateFile[], list: string): void {
  const seen = new Set<string>();
  for (const f of files) {
    const problem = unsafeNameReason(f.fileName);
    if (problem) throw new MetaFailure(`${list}: file name ${JSON.stringify(f.fileName)} ${problem}`);
    const folded = f.fileName.toLowerCase();
    if (seen.has(folded))
      throw new MetaFailure(`${list}: file name ${JSON.stringify(f.fileName)} appears twice`);
    seen.add(folded);
  }
}

/** .NET ticks of the Unix epoch. */
const EPOCH_TICKS = 621_355_968_000_000_000n;

/** Writes `data` to dir/name via a temp file in the same directory, fsync and rename. */
async function writeAtomically(
  dir: string,
  name: string,
  data: Uint8Array,
  lastWriteUtc: bigint,
): Promise<void> {
  const tmp = join(dir, `.outpost-tmp-${randomBytes(8).toString('hex')}`);
  let ok = false;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      const ms = Number((lastWriteUtc - EPOCH_TICKS) / 10_000n);
      // A datetime outside what the file system keeps is not worth failing the update for.
      if (Number.isFinite(ms) && ms > 0) await fh.utimes(new Date(), new Date(ms)).catch(() => {});
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
    ok = true;
  } finally {
    if (!ok) await unlink(tmp).catch(() => {});
  }
}

/** Makes the renames durable (best effort: not every OS can fsync a directory). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // e.g. Windows: directories cannot be opened for fsync
  }
}
