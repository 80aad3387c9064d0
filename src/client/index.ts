/** The TypeScript SDK: `AgentClient` and what it returns and throws. */

export type { ReconnectResult } from './channel.js';
export {
  AgentClient,
  type AgentInfo,
  type AgentTypeInput,
  type CallOptions,
  type ClientOptions,
  type EntryKindName,
  type ExecOptions,
  type ExecResult,
  type HashName,
  type ListOptions,
  type ProcessInfo,
  type RemoteEntry,
  type RemoteStats,
} from './client.js';
export {
  AbortError,
  ConnectionError,
  type ConnectionErrorCode,
  HandshakeError,
  isRemoteError,
  OutpostError,
  type OutpostErrorOptions,
  RemoteError,
  SessionLostError,
  TimeoutError,
  VerificationError,
} from './errors.js';
export { type ProcessExit, RemoteProcess, type SpawnOptions } from './process.js';
export {
  type ReadStreamOptions,
  RemoteReadStream,
  RemoteWriteStream,
  type WriteStreamOptions,
} from './streams.js';
export type {
  SyncOptions,
  SyncResult,
  TransferOptions,
  TransferProgress,
  TransferResult,
} from './transfer.js';
