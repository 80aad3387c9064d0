/** The TypeScript SDK: `AgentClient` and what it returns and throws. */

export type { ReconnectResult } from './channel.js';
export {
  AgentClient,
  type AgentInfo,
  type AgentProcessInfo,
  type AgentTypeInput,
  type CallOptions,
  type ClientOptions,
  type CloseOptions,
  type DetachedProcess,
  type ExecOptions,
  type ExecResult,
  type HashName,
  type ListOptions,
  type ProcessInfo,
  type UpdateFileInput,
} from './client.js';
export type { LinkSource } from './dial.js';
export {
  type EntryType,
  entryName,
  entryType,
  type RemoteEntry,
  relativeName,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
} from './entries.js';
export {
  AbortError,
  ConnectionError,
  type ConnectionErrorCode,
  HandshakeError,
  isRemoteError,
  MetaError,
  OutpostError,
  type OutpostErrorOptions,
  RemoteError,
  SessionLostError,
  TimeoutError,
  UNKNOWN_REMOTE_KIND,
  VerificationError,
} from './errors.js';
export type { JobLogLevel, JobLogLine, JobRun, RunJobOptions } from './jobs.js';
export {
  type AgentKeys,
  AgentListener,
  type AgentListenerEvents,
  type AgentListenerOptions,
  type ListenerConnectOptions,
  MAX_KEY_BYTES,
  type OutboundAgent,
} from './listener.js';
export { type ProcessExit, RemoteProcess, type SpawnOptions } from './process.js';
export {
  type ReadStreamOptions,
  RemoteReadStream,
  RemoteWriteStream,
  type WriteStreamOptions,
} from './streams.js';
export type { DeploySyncOptions, DeploySyncResult } from './sync.js';
export type {
  LocalTree,
  SyncOptions,
  SyncResult,
  TransferOptions,
  TransferProgress,
  TransferResult,
} from './transfer.js';
/** The local walk the SDK's uploads and syncs make (symlinks and special files skipped). */
export { walkLocal } from './transfer.js';
