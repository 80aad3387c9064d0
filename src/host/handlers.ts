/**
 * The product host's command table, indexed by the catalog's command names
 * (PRODUCT_COMMANDS in src/protocol/messages.ts), as ssh2's
 * lib/protocol/handlers.js is indexed by message type. Each handler opens
 * with its wire layout (`request → result`, the data after the token) and
 * gets its arguments decoded and typed by the catalog; what it returns is
 * encoded as the Response. Adding a command is one catalog entry and one
 * line here. A name with no handler is answered `Unsupported`.
 */
import type { ProductCommand, RequestOf, ResultOf } from '../protocol/index.js';
import type { FileService } from './files.js';
import type { JobManager } from './jobs.js';
import type { ProcessManager } from './processes.js';
import { serviceEnvironmentVariable } from './spawning.js';
import type { HostContext } from './types.js';

/** What a handler may use besides its arguments. */
export interface HandlerContext {
  /** The request's token. */
  readonly token: number;
  readonly settings: HostContext;
  readonly files: FileService;
  readonly processes: ProcessManager;
  readonly jobs: JobManager;
  /** Aborted when a Cancel names this request (its Error Canceled has gone out then). */
  readonly signal: AbortSignal;
  /**
   * Runs `sent` right after the Response is sent, or `dropped` when it will
   * never be (the request was canceled or failed): StartProcess's events
   * must follow its Response, and a canceled start must not leave a child.
   */
  afterReply(sent: () => void, dropped: () => void): void;
  /**
   * A Cancel of this request only aborts `signal`: the handler answers
   * (with `Canceled`) once its work has really stopped (ExecuteJob).
   */
  cancelsItself(): void;
  /** Cancel: ends a running request of `target` on this route, or terminates process `target`. */
  cancel(target: number): void;
}

/** One command's handler: typed arguments in, typed result out (or a HostError thrown). */
export type Handler<N extends ProductCommand> = (
  args: RequestOf<N>,
  ctx: HandlerContext,
) => Promise<ResultOf<N>> | ResultOf<N>;

/** The table: one optional handler per catalog name. */
export type Handlers = { readonly [N in ProductCommand]?: Handler<N> };

const EMPTY = {} as const;
const noop = (): void => {};

export const HANDLERS: Handlers = {
  // — → string path
  GetBaseWorkingDirectory: (_a, { settings }) => ({ path: settings.baseDirectory }),
  // string path → bool exists
  FileExists: (a, { files }) => files.fileExists(a),
  // string path → bool exists
  DirectoryExists: (a, { files }) => files.directoryExists(a),
  // string path → nullable<FileEntry> entry
  GetFileInfo: (a, { files }) => files.getFileInfo(a),
  // string path, bool recursive, array<string> include, array<string> exclude → array<FileEntry> entries
  ListDirectory: (a, { files }) => files.listDirectory(a),
  // string path → —
  CreateDirectory: (a, { files }) => files.createDirectory(a),
  // string path → —
  DeleteFile: (a, { files }) => files.deleteFile(a),
  // string path, bool recursive → —
  DeleteDirectory: (a, { files }) => files.deleteDirectory(a),
  // string path → —
  ClearDirectory: (a, { files }) => files.clearDirectory(a),
  // string source, string target, bool overwrite → —
  Move: (a, { files }) => files.move(a),
  // string source, string target, bool overwrite → —
  CopyFile: (a, { files }) => files.copyFile(a),
  // string path → bytes contents
  ReadAllBytes: (a, { files }) => files.readAllBytes(a),
  // string path, bytes contents, nullable<datetime> lastWriteUtc, nullable<int32> mode → —
  WriteAllBytes: (a, { files }) => files.writeAllBytes(a),
  // string path, byte fileMode, byte access → int32 handle
  OpenFile: async (a, ctx) => {
    const opened = await ctx.files.handles.open(a);
    // A Cancel that lost the race answered for it: nobody will ever know this handle.
    ctx.afterReply(noop, () => void ctx.files.handles.close(opened).catch(noop));
    return opened;
  },
  // int32 handle, int64 position, int32 maxCount → bytes data
  ReadFile: (a, { files }) => files.handles.read(a),
  // int32 handle, int64 position, bytes data → —
  WriteFile: (a, { files }) => files.handles.write(a),
  // int32 handle → —
  CloseFile: (a, { files }) => files.handles.close(a),
  // string path, string algorithm → string hash (lower-case hex)
  GetFileHash: (a, { files }) => files.getFileHash(a),
  // string path, datetime lastWriteUtc → —
  SetLastWriteTime: (a, { files }) => files.setLastWriteTime(a),
  // string path, int32 mode → —
  SetMode: (a, { files }) => files.setMode(a),
  // (extension) array<string> paths → —
  DeleteFiles: (a, { files }) => files.deleteFiles(a),
  // string fileName, array<string> args, nullable<string> workingDirectory, map environment, byte flags
  //   → int32 osProcessId, then events Stdout/Stderr/Exited on the token
  StartProcess: async (a, ctx) => {
    const started = await ctx.processes.start(ctx.token, a);
    ctx.afterReply(started.begin, started.discard);
    return { osProcessId: started.pid };
  },
  // int32 processToken, bytes data, bool close → —
  WriteStdin: async (a, { processes }) => {
    await processes.writeStdin(a);
    return EMPTY;
  },
  // int32 processToken, bool entireTree → — (answered at once; Exited reports the end)
  TerminateProcess: async (a, { processes }) => {
    await processes.terminate(a);
    return EMPTY;
  },
  // string name → nullable<string> value (the host's own environment)
  GetEnvironmentVariable: (a) => ({ value: serviceEnvironmentVariable(a.name) }),
  // (extension) — → array<{int32 token, int32 pid, string fileName, bool running}> processes
  ListProcesses: (_a, { processes }) => processes.list(),
  // string jobType, bytes payload → bytes result, after Log events
  ExecuteJob: async (a, ctx) => {
    ctx.cancelsItself();
    return { result: await ctx.jobs.run(ctx.token, a.jobType, a.payload, ctx.signal) };
  },
  // int32 targetToken → no reply of its own
  Cancel: (a, ctx) => {
    ctx.cancel(a.targetToken);
    return EMPTY;
  },
};
