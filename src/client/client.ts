/**
 * `AgentClient`: the TypeScript SDK for orchestrators. One client is one
 * connection to one agent session; any number of requests may be in flight
 * on it at once (replies are matched by token).
 *
 *     const agent = await AgentClient.connect({ host, port, mode: 'aes', key });
 *     await agent.upload('./build', '/srv/app/releases/42');
 *     const { code, stdout } = await agent.exec('/srv/app/releases/42/install.sh', [], { encoding: 'utf8' });
 *     await agent.close();
 */
import { Buffer } from 'node:buffer';
import { finished } from 'node:stream/promises';
import {
  DEFAULT_PORT,
  dateToTicks,
  formatVersion,
  HASH_ALGORITHMS,
  type HashAlgorithm,
  isHashAlgorithm,
  MAX_MAX_MESSAGE_SIZE,
  type ProductType,
  type ResultOf,
  ticksToDate,
} from '../protocol/index.js';
import type { EncryptionMode } from '../transport/index.js';
import { Channel, type ReconnectResult } from './channel.js';
import { ClientContext, noop } from './context.js';
import type { LinkSource } from './dial.js';
import { type RemoteEntry, toEntry } from './entries.js';
import {
  abortReason,
  ConnectionError,
  HandshakeError,
  isRemoteError,
  MetaError,
  RemoteError,
  throwIfAborted,
} from './errors.js';
import { type JobRun, jobPayload, type RunJobOptions, runJob } from './jobs.js';
import {
  type AgentTypeInput,
  checkDate,
  checkMessageLimit,
  checkMode,
  checkUpdateName,
  DEFAULT_RECONNECT,
  globs,
  productType,
  reconnectPolicy,
  toBytes,
  toKey,
} from './options.js';
import { checkPath, RemotePaths } from './paths.js';
import { type ProcessExit, RemoteProcess, type SpawnOptions, startArguments } from './process.js';
import {
  type ReadStreamOptions,
  RemoteReadStream,
  RemoteWriteStream,
  type WriteStreamOptions,
} from './streams.js';
import { type DeploySyncOptions, type DeploySyncResult, syncTree, uploadTreeArchive } from './sync.js';
import { download, listRemoteTree, type TransferOptions, type TransferResult, upload } from './transfer.js';

export type { AgentTypeInput } from './options.js';

/** Options of {@link AgentClient.connect}. */
export interface ClientOptions {
  /** The agent's host name or IP address. */
  host: string;
  /** The agent's TCP port (default 46336). */
  port?: number;
  /**
   * The agent's encryption mode. Default: `'aes'` when `key` is given,
   * `'ssl'` when `ca` or `thumbprint` is, else `'none'`. A mode other than
   * the agent's fails with a `HandshakeError` (`MODE_MISMATCH`) naming both.
   */
  mode?: EncryptionMode;
  /** Mode aes: the agent's key, as 32/48/64 hex digits or 16/24/32 bytes. */
  key?: string | Uint8Array;
  /** Mode ssl: PEM of the agent's certificate or of the CA that issued it. */
  ca?: string | Buffer;
  /** Mode ssl: the agent certificate's SHA-256 thumbprint (hex; colons and case ignored). */
  thumbprint?: string;
  /** Mode ssl: skip certificate verification (testing only). */
  insecure?: boolean;
  /** Mode ssl: the name the certificate must carry (default: `host`). */
  servername?: string;
  /** Product whose host serves file and process requests (default BuildMaster, agent type 2). */
  agentType?: AgentTypeInput;
  /** Resume this session (e.g. a previous client's `sessionId`); a different ID granted means it is gone. */
  sessionId?: number;
  /** Cancels connecting. */
  signal?: AbortSignal;
  /** Deadline for connecting, handshake included (default 10 s). */
  timeoutMs?: number;
  /** Largest message accepted from the agent (default 1 GiB, the largest MaxMessageSize an agent may set). */
  maxMessageSize?: number;
  /**
   * The agent's MaxMessageSize (default 64 MiB, the contract's default). The
   * wire does not report it, and a request above it makes the agent close
   * the connection, so set it when the agent is configured lower: requests
   * are then sized (and larger files streamed in pieces) to fit.
   */
  agentMaxMessageSize?: number;
  /**
   * Reconnect automatically (same session) when the connection drops:
   * `true` = 5 retries 500 ms apart. Running processes keep streaming;
   * requests in flight reject with a retryable `ConnectionError`.
   */
  reconnect?: boolean | { retries?: number; delayMs?: number };
  /**
   * Take connections from here instead of dialing `host:port` (then `host`
   * only names the agent in messages): a stream already connected to the
   * agent, such as an outbound agent's link (`AgentListener` passes this).
   * Called for every connection, reconnects included. Mode defaults to
   * `'none'` (an outbound link is TLS underneath).
   */
  link?: LinkSource;
}

/** What {@link AgentClient.info} reports: the contract's AgentInfo (PROTOCOL.md §5.1). */
export type AgentInfo = ResultOf<'GetAgentInfo'>;

/** A file for {@link AgentClient.update}: stored under the agent's extension cache. */
export interface UpdateFileInput {
  /** A plain file name (no directory part, no `..`). */
  name: string;
  data: string | Uint8Array;
  /** Last-write time to record (default: now). */
  mtime?: Date;
}

/** Options of {@link AgentClient.list}. */
export interface ListOptions {
  /** Descend into subdirectories (symlinked directories are listed, not followed). */
  recursive?: boolean;
  /** Globs the relative names must match (default: all). */
  include?: string | string[];
  /** Globs to leave out (an excluded directory is not descended into). Exclude wins. */
  exclude?: string | string[];
  signal?: AbortSignal;
}

/** Options accepted by every call. */
export interface CallOptions {
  /** Rejects the call with an `AbortError` (or `TimeoutError` for `AbortSignal.timeout()`). */
  signal?: AbortSignal;
}

/** Options of {@link AgentClient.exec}. */
export interface ExecOptions extends Omit<SpawnOptions, 'stdin' | 'highWaterMark'> {
  /** Written to the process's stdin, which is then closed. */
  input?: string | Uint8Array;
  /** Bytes of stdout and of stderr kept (each; default 10 MiB); more is read and discarded and `truncated` is set. */
  maxOutput?: number;
  /** Decode stdout and stderr to strings with this encoding. */
  encoding?: BufferEncoding;
}

/** What {@link AgentClient.exec} returns. */
export interface ExecResult<T extends string | Buffer = Buffer> extends ProcessExit {
  stdout: T;
  stderr: T;
  /** True when stdout or stderr exceeded `maxOutput` and was cut. */
  truncated: boolean;
}

/** An entry of {@link AgentClient.listProcesses}. */
export type ProcessInfo = ResultOf<'ListProcesses'>['processes'][number];

/** A process of the agent (`agentProcesses()`, Outpost extension), any session of this principal. */
export interface AgentProcessInfo {
  sessionId: number;
  token: number;
  pid: number;
  command: string;
  started: Date;
  /** False once it has exited (its Exited not yet delivered). */
  running: boolean;
  /** Started with `spawnDetached`, waiting for `attachProcess`. */
  detached: boolean;
  /** A connection receives its output now. */
  attached: boolean;
}

/** What `spawnDetached` started: resume `sessionId` and `attachProcess(token)` to follow it. */
export interface DetachedProcess {
  sessionId: number;
  token: number;
  pid: number;
  /** How long the agent keeps the session once no connection is attached (granted, ms). */
  keptMs: number;
}

/** A MetaError for an extension the agent does not know, as "the agent lacks …". */
function lacks(err: unknown, what: string, command: string): never {
  if (err instanceof MetaError && /unknown meta command/.test(err.message))
    throw new MetaError(
      err.requestCommand,
      `this agent lacks ${what} (${command} is an Outpost extension; an Outpost agent of this version has it)`,
      command,
    );
  throw err;
}

/** Hash algorithms of {@link AgentClient.hash}, by their wire names. */
export type HashName = HashAlgorithm;

const DEFAULT_MAX_OUTPUT = 10 * 1024 * 1024;

/** Options of {@link AgentClient.close}. */
export interface CloseOptions {
  /** Keep the session on the agent for a later resume (default false: it ends). */
  keepSession?: boolean;
  /** Stops waiting for the agent to confirm CloseSession (the client closes all the same). */
  signal?: AbortSignal;
}

/**
 * A connection to an Outpost (or Inedo) agent, speaking protocol v1.
 * Create one with {@link AgentClient.connect}; end it with {@link close}
 * (which ends its session too, unless asked to keep it for a resume).
 */
export class AgentClient {
  private readonly channel: Channel;
  private readonly ctx: ClientContext;
  private cachedInfo: AgentInfo;

  private constructor(channel: Channel, info: AgentInfo, agentType: ProductType) {
    this.channel = channel;
    this.cachedInfo = info;
    this.ctx = new ClientContext(channel, agentType, new RemotePaths(info.platform === 'win32' ? '\\' : '/'));
  }

  /**
   * Connects to an agent and performs the handshake, then GetAgentInfo (to
   * learn its platform's path separator and the agent types it serves).
   *
   * @throws HandshakeError when the agent refuses, uses another mode, or its
   *   certificate does not verify (the message names expected and presented thumbprints).
   * @throws TimeoutError after `timeoutMs`; AbortError when `signal` fires.
   */
  static async connect(options: ClientOptions): Promise<AgentClient> {
    if (options === null || typeof options !== 'object')
      throw new TypeError('connect() needs an options object');
    if (typeof options.host !== 'string' || options.host === '')
      throw new TypeError("host must be the agent's host name or IP address");
    const port = options.port ?? DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new RangeError(`port must be an integer between 1 and 65535, got ${String(options.port)}`);
    const key = toKey(options.key);
    const mode: EncryptionMode =
      options.mode ??
      (key ? 'aes' : options.ca !== undefined || options.thumbprint !== undefined ? 'ssl' : 'none');
    if (options.link !== undefined && typeof options.link !== 'function')
      throw new TypeError('link must be a function that resolves with a socket connected to the agent');
    if (options.link && mode === 'ssl')
      throw new TypeError(
        "mode ssl cannot run over a link: an outbound agent's link is TLS already and the agent answers mode none",
      );
    const agentType = productType(options.agentType);
    const agentLimit = checkMessageLimit(options.agentMaxMessageSize);
    const sessionId = options.sessionId ?? 0;
    if (!Number.isInteger(sessionId) || sessionId < 0 || sessionId > 0x7fffffff)
      throw new RangeError(
        `sessionId must be a positive int32 (or 0 for a new session), got ${String(sessionId)}`,
      );
    const { channel } = await Channel.open(
      {
        connect: {
          host: options.host,
          port,
          mode,
          key,
          ca: options.ca,
          thumbprint: options.thumbprint,
          insecure: options.insecure,
          servername: options.servername,
          timeoutMs: options.timeoutMs,
          maxMessageSize: options.maxMessageSize ?? MAX_MAX_MESSAGE_SIZE,
        },
        reconnect: reconnectPolicy(options.reconnect),
        link: options.link,
      },
      sessionId,
      options.signal,
    );
    try {
      const info = await channel.meta('GetAgentInfo', {}, { signal: options.signal });
      channel.agentMaxMessageSize = agentLimit;
      channel.supportedAgentTypes = new Set(info.supportedAgentTypes);
      return new AgentClient(channel, info, agentType);
    } catch (err) {
      await channel.close().catch(noop);
      if (err instanceof ConnectionError)
        throw new HandshakeError(
          'REJECTED',
          `the agent at ${options.host}:${port} closed the connection at the first request` +
            (mode === 'aes' ? ": the AES key is most likely not the agent's" : ''),
          { cause: err },
        );
      throw err;
    }
  }

  /** The session this client is attached to (pass it as `sessionId` to resume it later). */
  get sessionId(): number {
    return this.channel.sessionId;
  }

  /** The product agent type file and process requests go to. */
  get agentType(): ProductType {
    return this.ctx.agentType as ProductType;
  }

  /** True while a connection is up. */
  get connected(): boolean {
    return this.channel.connected;
  }

  /** The agent's version from the handshake as `major.minor.build.revision`. */
  get agentVersion(): string {
    return formatVersion(this.channel.agentVersion);
  }

  /** The agent's path separator (`\\` for a Windows agent, else `/`), from its platform. */
  get pathSeparator(): string {
    return this.ctx.paths.sep;
  }

  /** What the agent reported when this client connected (see {@link info} for a fresh copy). */
  get agentInfo(): AgentInfo {
    return this.cachedInfo;
  }

  // ------------------------------------------------------------ meta

  /** Round-trips a Ping; resolves with the time it took in milliseconds. */
  async ping(options: CallOptions = {}): Promise<number> {
    const t0 = performance.now();
    await this.channel.ping(options);
    return performance.now() - t0;
  }

  /** The agent's product, version, host name, OS, architecture, process, uptime, agent types and mode. */
  async info(options: CallOptions = {}): Promise<AgentInfo> {
    this.cachedInfo = await this.channel.meta('GetAgentInfo', {}, options);
    return this.cachedInfo;
  }

  /** The configured root path of a product (default: this client's agent type), created on demand. */
  async rootPath(agentType?: AgentTypeInput, options: CallOptions = {}): Promise<string> {
    const t = productType(agentType ?? this.agentType);
    return (await this.channel.meta('GetAgentRootPath', { agentType: t }, options)).path;
  }

  /** The product's base working directory (GetBaseWorkingDirectory): where relative paths resolve. */
  async getBaseWorkingDirectory(options: CallOptions = {}): Promise<string> {
    return (await this.ctx.call('GetBaseWorkingDirectory', {}, { signal: options.signal })).path;
  }

  /** An environment variable of the product's host on the agent, or null when it is not set. */
  async getEnvironmentVariable(name: string, options: CallOptions = {}): Promise<string | null> {
    if (typeof name !== 'string' || name === '') throw new TypeError('name must be a non-empty string');
    return (await this.ctx.call('GetEnvironmentVariable', { name }, { signal: options.signal })).value;
  }

  /**
   * Stores binaries and extensions (`.upack` files) on the agent
   * (UpdateAgent), under `ExtensionCachePath/<this client's address>/<product>/`.
   * UpdateAgent has no reply on success, so a Ping follows it: resolves once
   * the agent has confirmed, rejects with `MetaError` when it refused.
   */
  async update(
    update: { product?: AgentTypeInput; binaries?: UpdateFileInput[]; extensions?: UpdateFileInput[] },
    options: CallOptions = {},
  ): Promise<void> {
    if (update === null || typeof update !== 'object') throw new TypeError('update() needs an object');
    const files = (list: UpdateFileInput[] | undefined, what: string) => {
      if (list === undefined) return [];
      if (!Array.isArray(list)) throw new TypeError(`update.${what} must be an array of { name, data }`);
      return list.map((f, i) => ({
        fileName: checkUpdateName(f?.name, `update.${what}[${i}].name`),
        lastWriteUtc: dateToTicks(f.mtime === undefined ? new Date() : checkDate(f.mtime, 'mtime')),
        contents: toBytes(f.data),
      }));
    };
    await this.channel.updateAgent(
      {
        targetType: productType(update.product ?? this.agentType),
        binaries: files(update.binaries, 'binaries'),
        extensions: files(update.extensions, 'extensions'),
      },
      options,
    );
  }

  /** {@link update} under the contract's name: `agent.updateAgent({ extensions: [{ name, data }] })`. */
  updateAgent(
    update: { product?: AgentTypeInput; binaries?: UpdateFileInput[]; extensions?: UpdateFileInput[] },
    options: CallOptions = {},
  ): Promise<void> {
    return this.update(update, options);
  }

  // ------------------------------------------------------------ jobs

  /**
   * Runs a job on the agent (ExecuteJob): a built-in `outpost.*` type or one
   * of an extension shipped with {@link updateAgent}. `payload` is bytes, a
   * string (UTF-8) or an object (JSON). Log lines stream through `logs`;
   * `result` resolves with the job's result bytes (see docs/SDK.md, "Jobs").
   */
  runJob(
    type: string,
    payload: Uint8Array | string | object = new Uint8Array(0),
    options: RunJobOptions = {},
  ): JobRun {
    return runJob(this.ctx, type, jobPayload(payload), options);
  }

  /** Ends the session on the agent: its processes are terminated and its handles closed. Closes the client. */
  async closeSession(options: CallOptions = {}): Promise<void> {
    await this.channel.closeSession(options);
  }

  /**
   * Closes the client once requests in flight have settled, and ends its
   * session on the agent (CloseSession: its processes are terminated, its
   * handles closed, its host processes stopped). Processes this client
   * followed reject their `exited` with `ConnectionError` `CLOSED`.
   *
   * `keepSession: true` keeps the session on the agent (its processes run
   * on, until its DetachedSessionTimeout) for a later
   * `AgentClient.connect({ …, sessionId })`. When the agent cannot be told
   * (no connection, or `signal` fires first), the client closes all the
   * same and the agent ends the session after its DetachedSessionTimeout.
   * Never rejects.
   */
  async close(options: CloseOptions = {}): Promise<void> {
    if (options.keepSession === true) await this.channel.close();
    else await this.channel.end({ signal: options.signal });
  }

  /**
   * Reconnects to the same session now (half-closing the current connection
   * first, so nothing the agent already sent is lost). `resumed` is false
   * when the agent granted a new session: everything of the old one then
   * rejected with `SessionLostError`.
   */
  async reconnect(
    options: CallOptions & { retries?: number; delayMs?: number } = {},
  ): Promise<ReconnectResult> {
    const policy = reconnectPolicy({
      retries: options.retries ?? 0,
      delayMs: options.delayMs ?? DEFAULT_RECONNECT.delayMs,
    });
    return this.channel.reconnect(policy!.retries, policy!.delayMs, options.signal);
  }

  // ------------------------------------------------------------ files

  /** True when `path` is an existing file (false for a directory). */
  async exists(path: string, options: CallOptions = {}): Promise<boolean> {
    checkPath(path);
    return (await this.ctx.call('FileExists', { path }, { path, signal: options.signal })).exists;
  }

  /** True when `path` is an existing directory (false for a file). */
  async dirExists(path: string, options: CallOptions = {}): Promise<boolean> {
    checkPath(path);
    return (await this.ctx.call('DirectoryExists', { path }, { path, signal: options.signal })).exists;
  }

  /**
   * Full path, type, size, last-write time and mode of `path` (a symbolic
   * link is reported as itself). A missing path rejects with `RemoteError`
   * `NotFound` (the wire answers null; the SDK keeps its throwing contract).
   */
  async stat(path: string, options: CallOptions = {}): Promise<RemoteEntry> {
    checkPath(path);
    const { entry } = await this.ctx.call('GetFileInfo', { path }, { path, signal: options.signal });
    if (!entry)
      throw new RemoteError('NotFound', `${path}: no such file or directory`, 'GetFileInfo', { path });
    return toEntry(entry);
  }

  /**
   * Lists the entries below a directory (not the directory itself), sorted
   * by full path. A listing larger than one message fails with `TooLarge`
   * unless it is recursive without globs: it is then fetched directory by
   * directory. `entryName()` gives an entry's name.
   */
  async list(path: string, options: ListOptions = {}): Promise<RemoteEntry[]> {
    checkPath(path);
    const include = globs(options.include, 'include');
    const exclude = globs(options.exclude, 'exclude');
    const recursive = options.recursive ?? false;
    const entries =
      recursive && include.length === 0 && exclude.length === 0
        ? await listRemoteTree(this.ctx, path, options.signal)
        : (
            await this.ctx.call(
              'ListDirectory',
              { path, recursive, include, exclude },
              { path, signal: options.signal },
            )
          ).entries;
    return entries
      .map(toEntry)
      .sort((a, b) => (a.fullPath < b.fullPath ? -1 : a.fullPath > b.fullPath ? 1 : 0));
  }

  /** Creates a directory and its parents; an existing directory is fine. */
  async mkdir(path: string, options: CallOptions = {}): Promise<void> {
    checkPath(path);
    await this.ctx.call('CreateDirectory', { path }, { path, signal: options.signal });
  }

  /**
   * Deletes a file, or several (one DeleteFiles request, an Outpost
   * extension; against an agent without it, one DeleteFile per path).
   * Absent files are fine.
   */
  async rm(path: string | string[], options: CallOptions = {}): Promise<void> {
    if (Array.isArray(path)) {
      for (const [i, p] of path.entries()) checkPath(p, `path[${i}]`);
      await this.ctx.deleteFiles(path, options.signal);
      return;
    }
    checkPath(path);
    await this.ctx.call('DeleteFile', { path }, { path, signal: options.signal });
  }

  /** Deletes a directory (with its contents when `recursive`); absent is fine, non-empty without `recursive` is `NotEmpty`. */
  async rmdir(path: string, options: CallOptions & { recursive?: boolean } = {}): Promise<void> {
    checkPath(path);
    await this.ctx.call(
      'DeleteDirectory',
      { path, recursive: options.recursive ?? false },
      { path, signal: options.signal },
    );
  }

  /** Empties a directory, creating it when absent. */
  async clear(path: string, options: CallOptions = {}): Promise<void> {
    checkPath(path);
    await this.ctx.call('ClearDirectory', { path }, { path, signal: options.signal });
  }

  /** Moves (renames) a file or directory; `AlreadyExists` when the target exists unless `overwrite` (files only). */
  async move(
    source: string,
    destination: string,
    options: CallOptions & { overwrite?: boolean } = {},
  ): Promise<void> {
    checkPath(source, 'source');
    checkPath(destination, 'destination');
    await this.ctx.call(
      'Move',
      { source, target: destination, overwrite: options.overwrite ?? false },
      { path: source, signal: options.signal },
    );
  }

  /** Copies a file atomically on the agent, keeping mode and time; `AlreadyExists` unless `overwrite`. */
  async copy(
    source: string,
    destination: string,
    options: CallOptions & { overwrite?: boolean } = {},
  ): Promise<void> {
    checkPath(source, 'source');
    checkPath(destination, 'destination');
    await this.ctx.call(
      'CopyFile',
      { source, target: destination, overwrite: options.overwrite ?? false },
      { path: source, signal: options.signal },
    );
  }

  /**
   * Reads a whole file (ReadAllBytes). A file above the agent's message
   * limit is streamed through a handle instead, transparently.
   */
  readFile(path: string, options?: CallOptions & { encoding?: undefined }): Promise<Buffer>;
  readFile(path: string, options: CallOptions & { encoding: BufferEncoding }): Promise<string>;
  async readFile(
    path: string,
    options: CallOptions & { encoding?: BufferEncoding | undefined } = {},
  ): Promise<Buffer | string> {
    checkPath(path);
    let data: Buffer;
    try {
      const r = await this.ctx.call('ReadAllBytes', { path }, { path, signal: options.signal });
      data = Buffer.from(r.contents.buffer, r.contents.byteOffset, r.contents.byteLength);
    } catch (err) {
      if (!isRemoteError(err, 'TooLarge')) throw err;
      const chunks: Buffer[] = [];
      const rs = new RemoteReadStream(this.ctx, path, options.signal ? { signal: options.signal } : {});
      for await (const c of rs) chunks.push(c as Buffer);
      data = Buffer.concat(chunks);
    }
    return options.encoding ? data.toString(options.encoding) : data;
  }

  /**
   * Writes a whole file atomically (the target is replaced or left as it
   * was). Data above the agent's message limit is written through a handle
   * to a temp name beside the target, then moved over it.
   */
  async writeFile(
    path: string,
    data: string | Uint8Array,
    options: CallOptions & { mode?: number; mtime?: Date; encoding?: BufferEncoding } = {},
  ): Promise<void> {
    checkPath(path);
    const bytes = toBytes(data, options.encoding);
    const mode = options.mode === undefined ? null : checkMode(options.mode);
    const mtime = options.mtime === undefined ? null : checkDate(options.mtime, 'mtime');
    throwIfAborted(options.signal, `writing ${path}`);
    if (bytes.length <= this.ctx.chunkSize(Number.MAX_SAFE_INTEGER, Buffer.byteLength(path))) {
      await this.ctx.call(
        'WriteAllBytes',
        { path, contents: bytes, lastWriteUtc: mtime === null ? null : dateToTicks(mtime), mode },
        { path, signal: options.signal },
      );
      return;
    }
    const ws = new RemoteWriteStream(this.ctx, path, {
      ...(mode !== null ? { mode } : {}),
      ...(mtime !== null ? { mtime } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    ws.end(bytes);
    await finished(ws);
  }

  /** The file's hash computed on the agent (streamed there, never read whole), as lower-case hex. */
  async hash(path: string, algorithm: HashName = 'sha256', options: CallOptions = {}): Promise<string> {
    checkPath(path);
    if (typeof algorithm !== 'string' || !isHashAlgorithm(algorithm))
      throw new TypeError(
        `algorithm must be one of ${HASH_ALGORITHMS.join(', ')}, got ${JSON.stringify(algorithm)}`,
      );
    const r = await this.ctx.call('GetFileHash', { path, algorithm }, { path, signal: options.signal });
    return r.hash.toLowerCase();
  }

  /** Sets a file's last-write time. */
  async setMtime(path: string, mtime: Date, options: CallOptions = {}): Promise<void> {
    checkPath(path);
    const ticks = dateToTicks(checkDate(mtime, 'mtime'));
    await this.ctx.call('SetLastWriteTime', { path, lastWriteUtc: ticks }, { path, signal: options.signal });
  }

  /** Sets POSIX permission bits (on Windows only the read-only bit applies). */
  async chmod(path: string, mode: number, options: CallOptions = {}): Promise<void> {
    checkPath(path);
    await this.ctx.call('SetMode', { path, mode: checkMode(mode) }, { path, signal: options.signal });
  }

  /**
   * A remote file as a `Readable`, read through a handle with `window`
   * ReadFile requests of `chunkSize` bytes in flight.
   */
  createReadStream(path: string, options: ReadStreamOptions = {}): RemoteReadStream {
    checkPath(path);
    return new RemoteReadStream(this.ctx, path, options);
  }

  /**
   * A remote file as a `Writable`. Data goes to a temp file beside `path`
   * with `window` WriteFile requests in flight; on 'finish' it has been
   * moved over `path` (atomic). On error or abort the temp file is deleted.
   */
  createWriteStream(path: string, options: WriteStreamOptions = {}): RemoteWriteStream {
    checkPath(path);
    return new RemoteWriteStream(this.ctx, path, options);
  }

  /**
   * Uploads a local file or directory tree to `remote` (the target path
   * itself, not its parent). Each file is verified by SHA-256 (unless
   * `verify: false`) and replaced atomically; symbolic links are skipped.
   */
  upload(local: string, remote: string, options: TransferOptions = {}): Promise<TransferResult> {
    checkPath(local, 'local');
    checkPath(remote, 'remote');
    return upload(this.ctx, local, remote, options);
  }

  /**
   * Downloads a remote file or directory tree to `local` (the target path
   * itself). Each file lands in a temp file, is verified by SHA-256 and
   * renamed into place, with the remote mode and last-write time.
   */
  download(remote: string, local: string, options: TransferOptions = {}): Promise<TransferResult> {
    checkPath(remote, 'remote');
    checkPath(local, 'local');
    return download(this.ctx, remote, local, options);
  }

  /**
   * Makes the remote directory match the local one: sends files whose size
   * or last-write time (or, with `compare: 'hash'`, SHA-256)
   * differ, and with `delete: true` removes remote entries that do not
   * exist locally; `dryRun` only reports. On an Outpost agent one manifest
   * request describes the remote tree and the changes travel as one
   * archive stream; elsewhere the contract's own commands are used.
   */
  sync(local: string, remote: string, options: DeploySyncOptions = {}): Promise<DeploySyncResult> {
    checkPath(local, 'local');
    checkPath(remote, 'remote');
    return syncTree(this.ctx, local, remote, options);
  }

  /**
   * Uploads a local directory tree as one archive stream that the agent
   * extracts (outpost.extract): much faster than {@link upload} for many
   * small files. Falls back to {@link upload} on an agent without the job.
   */
  uploadArchive(
    local: string,
    remote: string,
    options: TransferOptions = {},
  ): Promise<TransferResult & { method: 'archive' | 'files' }> {
    checkPath(local, 'local');
    checkPath(remote, 'remote');
    return uploadTreeArchive(this.ctx, local, remote, options);
  }

  // ------------------------------------------------------------ processes

  /**
   * Starts a process on the agent; resolves once it runs (with its pid).
   * Read `stdout` and `stderr` (or `resume()` them): while one is full, the
   * client stops reading the connection.
   */
  async spawn(
    file: string,
    args: readonly string[] = [],
    options: SpawnOptions = {},
  ): Promise<RemoteProcess> {
    const startArgs = startArguments(file, args, options, this.ctx.paths.sep === '\\');
    const { signal } = options;
    throwIfAborted(signal, `starting ${file}`);
    const token = this.channel.allocateToken();
    const proc = new RemoteProcess(this.ctx, token, {
      stdin: options.stdin ?? false,
      highWaterMark: options.highWaterMark,
    });
    this.channel.registerProcess(token, proc, this.ctx.agentType);
    try {
      const { osProcessId } = await this.ctx.call('StartProcess', startArgs, { token, path: file });
      proc.started(osProcessId);
    } catch (err) {
      this.channel.unregisterProcess(token);
      proc.onFailure(err as Error);
      throw err;
    }
    if (signal) {
      const onAbort = () => void proc.kill({ tree: true }).catch(noop);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        void proc.exited.then(
          () => signal.removeEventListener('abort', onAbort),
          () => signal.removeEventListener('abort', onAbort),
        );
      }
    }
    return proc;
  }

  /**
   * Runs a process to completion and collects its output (up to
   * `maxOutput` bytes of each stream). A non-zero exit code is returned,
   * not thrown. When `signal` fires the process tree is killed and the call
   * rejects with `AbortError` once the process has exited.
   */
  exec(
    file: string,
    args?: readonly string[],
    options?: ExecOptions & { encoding?: undefined },
  ): Promise<ExecResult<Buffer>>;
  exec(
    file: string,
    args: readonly string[],
    options: ExecOptions & { encoding: BufferEncoding },
  ): Promise<ExecResult<string>>;
  async exec(
    file: string,
    args: readonly string[] = [],
    options: ExecOptions = {},
  ): Promise<ExecResult<Buffer> | ExecResult<string>> {
    const maxOutput = options.maxOutput ?? DEFAULT_MAX_OUTPUT;
    if (!Number.isInteger(maxOutput) || maxOutput < 0)
      throw new RangeError(`maxOutput must be a non-negative integer, got ${String(options.maxOutput)}`);
    const input = options.input === undefined ? undefined : toBytes(options.input);
    const { input: _input, maxOutput: _max, encoding, ...spawnOptions } = options;
    const proc = await this.spawn(file, args, { ...spawnOptions, stdin: input !== undefined });
    let truncated = false;
    const collect = async (stream: NodeJS.ReadableStream): Promise<Buffer> => {
      const chunks: Buffer[] = [];
      let kept = 0;
      for await (const c of stream as AsyncIterable<Buffer>) {
        const room = maxOutput - kept;
        if (room >= c.length) {
          chunks.push(c);
          kept += c.length;
        } else {
          if (room > 0) chunks.push(c.subarray(0, room));
          kept += Math.max(0, room);
          truncated = true;
        }
      }
      return Buffer.concat(chunks);
    };
    if (proc.stdin && input) {
      // A process that exits without reading its input is not an exec failure.
      proc.stdin.on('error', noop);
      proc.stdin.end(input);
    }
    const [exit, stdout, stderr] = await Promise.all([
      proc.exited,
      collect(proc.stdout),
      collect(proc.stderr),
    ]);
    if (options.signal?.aborted) throw abortReason(options.signal, `running ${file}`);
    if (encoding)
      return { ...exit, stdout: stdout.toString(encoding), stderr: stderr.toString(encoding), truncated };
    return { ...exit, stdout, stderr, truncated };
  }

  // ------------------------------------------------ Outpost extensions (meta 6, 7, 8, 10, 11)

  /**
   * Asks the agent to keep this session for `detachedTimeoutMs` once no
   * connection is attached (SetSessionOptions, extension); resolves with what
   * it granted (it caps at its MaxDetachedSessionTimeout).
   */
  async setDetachedTimeout(detachedTimeoutMs: number, options: CallOptions = {}): Promise<number> {
    if (!Number.isInteger(detachedTimeoutMs) || detachedTimeoutMs < 1 || detachedTimeoutMs > 0x7fffffff)
      throw new RangeError(`detachedTimeoutMs must be a positive int32, got ${String(detachedTimeoutMs)}`);
    try {
      return (await this.channel.meta('SetSessionOptions', { detachedTimeoutMs }, options)).detachedTimeoutMs;
    } catch (err) {
      return lacks(err, 'per-session timeouts', 'SetSessionOptions');
    }
  }

  /** The running processes of every session of this principal (ListAgentProcesses, extension). */
  async agentProcesses(options: CallOptions = {}): Promise<AgentProcessInfo[]> {
    try {
      const { processes } = await this.channel.meta('ListAgentProcesses', {}, options);
      return processes.map(({ startedUtc, ...p }) => ({ ...p, started: ticksToDate(startedUtc) }));
    } catch (err) {
      return lacks(err, 'an agent-wide process list (outpost ps)', 'ListAgentProcesses');
    }
  }

  /** Stops a process of any session of this principal: SIGTERM (its tree unless `tree: false`), SIGKILL after 5 s. */
  async killAgentProcess(
    sessionId: number,
    token: number,
    options: CallOptions & { tree?: boolean } = {},
  ): Promise<void> {
    try {
      await this.channel.meta('KillProcess', { sessionId, token, entireTree: options.tree ?? true }, options);
    } catch (err) {
      lacks(err, 'killing processes of other sessions (outpost kill)', 'KillProcess');
    }
  }

  /**
   * Starts a process that outlives this client: the session is kept for
   * `keepMs` (default 24 h; the agent caps it) and the process's output is
   * kept by the agent (bounded; at the bound the process is paused) until a
   * client resumes the session and calls `attachProcess(token)`. Close this
   * client with `close({ keepSession: true })`.
   */
  async spawnDetached(
    file: string,
    args: readonly string[] = [],
    options: Omit<SpawnOptions, 'stdin'> & { keepMs?: number } = {},
  ): Promise<DetachedProcess> {
    const { keepMs, ...spawnOptions } = options;
    const keptMs = await this.setDetachedTimeout(keepMs ?? 24 * 3600_000, options);
    const startArgs = startArguments(
      file,
      args,
      { ...spawnOptions, stdin: false },
      this.ctx.paths.sep === '\\',
    );
    const token = this.channel.allocateToken();
    try {
      await this.channel.meta('DetachProcess', { token }, options);
    } catch (err) {
      lacks(err, 'detached processes (outpost exec --detach)', 'DetachProcess');
    }
    const { osProcessId } = await this.ctx.call('StartProcess', startArgs, {
      token,
      path: file,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return { sessionId: this.sessionId, token, pid: osProcessId, keptMs };
  }

  /**
   * Follows a detached process of this session (connect with its
   * `sessionId` first): everything it wrote since it started (or since the
   * last attach read it), then its live output, then its exit.
   */
  async attachProcess(
    token: number,
    options: CallOptions & { highWaterMark?: number } = {},
  ): Promise<RemoteProcess> {
    const proc = new RemoteProcess(this.ctx, token, { stdin: false, highWaterMark: options.highWaterMark });
    this.channel.registerProcess(token, proc, this.ctx.agentType);
    try {
      await this.channel.meta('AttachProcess', { token }, options);
    } catch (err) {
      this.channel.unregisterProcess(token);
      proc.onFailure(err as Error);
      lacks(err, 'detached processes (outpost attach)', 'AttachProcess');
    }
    proc.started(0);
    return proc;
  }

  /**
   * Processes started in this session (by any of its connections), running
   * or recently finished. ListProcesses is an Outpost extension: an agent
   * without it rejects with `RemoteError` `Unsupported`, saying so.
   */
  async listProcesses(options: CallOptions = {}): Promise<ProcessInfo[]> {
    try {
      return (await this.ctx.call('ListProcesses', {}, { signal: options.signal })).processes;
    } catch (err) {
      if (!isRemoteError(err, 'Unsupported')) throw err;
      throw new RemoteError(
        'Unsupported',
        'this agent cannot list processes: ListProcesses (44) is an Outpost extension it does not implement',
        'ListProcesses',
      );
    }
  }
}
