/**
 * Meta commands (agent type 0), answered by the agent itself (PROTOCOL.md §5.1):
 *
 *   Ping              empty response
 *   GetAgentInfo      version, host, OS, CPU count, separator, MaxMessageSize
 *   GetAgentRootPath  the product's root path (created on demand);
 *                     an agent type other than 1–3 → Error UnknownAgentType
 *   CloseSession      replies, then ends the session and its connections
 *   UpdateAgent       stores files under ExtensionCachePath/<instance>/<Product>/,
 *                     each atomically (temp file, fsync, rename); unsafe names →
 *                     Error InvalidArgument and nothing is written
 *
 * An unknown command code → Error UnknownCommand; arguments that do not
 * decode → Error InvalidArgument. The connection stays usable either way.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { arch, availableParallelism, hostname, release, type, version } from 'node:os';
import { join, sep } from 'node:path';
import {
  AGENT_TYPE_NAMES,
  AgentType,
  commandName,
  decodeArgs,
  ErrorKind,
  encodeError,
  encodeResponse,
  encodeResult,
  isProductType,
  type MetaCommand,
  Platform,
  PROTOCOL_VERSION,
  type RequestHeader,
  type RequestOf,
  type ResultOf,
} from '../protocol/index.js';
import type { AgentConfig } from './config.js';
import type { Logger } from './log.js';
import { describeAgentTypes } from './product.js';
import type { Session, SessionRegistry } from './sessions.js';
import { AGENT_VERSION } from './version.js';

/** A failure answered with an Error message. */
class MetaError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface MetaDeps {
  config: AgentConfig;
  sessions: SessionRegistry;
  logger: Logger;
}

type Reply = (message: Buffer) => boolean;

const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const MAX_NAME_BYTES = 255;

/**
 * Why `name` is not safe as a single path component, or null if it is.
 * Refused everywhere (whatever the agent's OS, so behaviour does not depend on
 * it): empty, "." and "..", "/" "\\" ":" (separators, drive letters, NTFS
 * streams), control characters (NUL included), a trailing dot or space
 * (Windows drops them), Windows device names, more than 255 UTF-8 bytes.
 * A leading dot is allowed (".config" is a plain file name).
 */
export function unsafeNameReason(name: string): string | null {
  if (name === '') return 'is empty';
  if (name === '.' || name === '..') return `must not be "${name}"`;
  if (/[/\\:]/.test(name)) return 'must not contain "/", "\\" or ":"';
  if (/[\x00-\x1f\x7f]/.test(name)) return 'must not contain control characters';
  if (/[. ]$/.test(name)) return 'must not end with a dot or a space';
  if (WINDOWS_DEVICE.test(name)) return 'is a reserved device name on Windows';
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  return null;
}

function platformByte(): number {
  switch (process.platform) {
    case 'win32':
      return Platform.Windows;
    case 'linux':
      return Platform.Linux;
    case 'darwin':
      return Platform.MacOS;
    default:
      return Platform.Other;
  }
}

export class MetaHandler {
  constructor(private readonly deps: MetaDeps) {}

  /** Answers one meta request; never throws. */
  async handle(header: RequestHeader, session: Session, reply: Reply): Promise<void> {
    const { token } = header;
    const name = commandName(AgentType.Meta, header.command) as MetaCommand | undefined;
    if (!name) {
      reply(
        encodeError(
          AgentType.Meta,
          token,
          ErrorKind.UnknownCommand,
          `unknown meta command ${header.command}`,
        ),
      );
      return;
    }
    let args: unknown;
    try {
      args = decodeArgs(name, header.body);
    } catch (err) {
      reply(
        encodeError(
          AgentType.Meta,
          token,
          ErrorKind.InvalidArgument,
          `${name}: arguments do not decode: ${(err as Error).message}`,
        ),
      );
      return;
    }
    try {
      switch (name) {
        case 'Ping':
          this.respond(reply, token, 'Ping', {});
          return;
        case 'GetAgentInfo':
          this.respond(reply, token, 'GetAgentInfo', this.agentInfo());
          return;
        case 'GetAgentRootPath':
          this.respond(
            reply,
            token,
            'GetAgentRootPath',
            await this.rootPath(args as RequestOf<'GetAgentRootPath'>),
          );
          return;
        case 'CloseSession':
          this.respond(reply, token, 'CloseSession', {});
          this.deps.sessions.close(session, 'closed by the client (CloseSession)');
          return;
        case 'UpdateAgent':
          await this.updateAgent(args as RequestOf<'UpdateAgent'>);
          this.respond(reply, token, 'UpdateAgent', {});
          return;
      }
    } catch (err) {
      if (err instanceof MetaError) {
        reply(encodeError(AgentType.Meta, token, err.kind, `${name}: ${err.message}`));
        return;
      }
      this.deps.logger.error({ err, command: name }, 'meta command failed');
      reply(
        encodeError(AgentType.Meta, token, ErrorKind.Internal, `${name} failed: ${(err as Error).message}`),
      );
    }
  }

  private respond<N extends MetaCommand>(reply: Reply, token: number, name: N, result: ResultOf<N>): void {
    reply(encodeResponse(AgentType.Meta, token, encodeResult(name, result)));
  }

  private agentInfo(): ResultOf<'GetAgentInfo'> {
    return {
      agentVersion: AGENT_VERSION,
      protocolVersion: PROTOCOL_VERSION,
      hostname: hostname(),
      platform: platformByte(),
      osDescription: `${type()} ${release()} ${version()}`.trim(),
      architecture: arch(),
      processorCount: availableParallelism(),
      directorySeparator: sep,
      maxMessageSize: this.deps.config.listener.maxMessageSize,
    };
  }

  private async rootPath(args: RequestOf<'GetAgentRootPath'>): Promise<ResultOf<'GetAgentRootPath'>> {
    if (!isProductType(args.agentType))
      throw new MetaError(
        ErrorKind.UnknownAgentType,
        `unknown agent type ${args.agentType}: expected one of ${describeAgentTypes(false)}`,
      );
    const path = this.deps.config.rootPaths[args.agentType];
    await mkdir(path, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      throw new MetaError(ErrorKind.IOError, `cannot create ${path} (${err.code ?? err.message})`);
    });
    return { path };
  }

  private async updateAgent(args: RequestOf<'UpdateAgent'>): Promise<void> {
    if (!isProductType(args.product))
      throw new MetaError(
        ErrorKind.UnknownAgentType,
        `unknown product ${args.product}: expected one of ${describeAgentTypes(false)}`,
      );
    const instanceProblem = unsafeNameReason(args.instance);
    if (instanceProblem)
      throw new MetaError(
        ErrorKind.InvalidArgument,
        `instance name ${JSON.stringify(args.instance)} ${instanceProblem}`,
      );
    const seen = new Set<string>();
    for (const f of args.files) {
      const problem = unsafeNameReason(f.name);
      if (problem)
        throw new MetaError(ErrorKind.InvalidArgument, `file name ${JSON.stringify(f.name)} ${problem}`);
      const folded = f.name.toLowerCase();
      if (seen.has(folded))
        throw new MetaError(ErrorKind.InvalidArgument, `file name ${JSON.stringify(f.name)} appears twice`);
      seen.add(folded);
    }
    const dir = join(this.deps.config.extensionCachePath, args.instance, AGENT_TYPE_NAMES[args.product]);
    try {
      await mkdir(dir, { recursive: true });
      for (const f of args.files) await writeAtomically(dir, f.name, f.data);
      await syncDirectory(dir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new MetaError(ErrorKind.IOError, `cannot store files in ${dir} (${e.code ?? e.message})`);
    }
    this.deps.logger.info(
      { instance: args.instance, product: AGENT_TYPE_NAMES[args.product], files: args.files.length, dir },
      'UpdateAgent stored files',
    );
  }
}

/** Writes `data` to dir/name via a temp file in the same directory, fsync and rename. */
async function writeAtomically(dir: string, name: string, data: Uint8Array): Promise<void> {
  const tmp = join(dir, `.outpost-tmp-${randomBytes(8).toString('hex')}`);
  let ok = false;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
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
