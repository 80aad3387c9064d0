/**
 * Every number the wire uses, in one place (PROTOCOL.md §2–§6).
 * Nothing else in the code base may spell these as literals.
 */

/** Sent first by every client; an agent that reads anything else closes. */
export const PROTOCOL_GUID = '5f1c8a2e-7b4d-4c39-9a6e-0d3b2f81c7a4';
export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 0;

/** Version packing: `(major << 16) | minor`, as an int32. */
export function packVersion(major: number, minor: number): number {
  return ((major & 0x7fff) << 16) | (minor & 0xffff);
}
export function unpackVersion(v: number): { major: number; minor: number } {
  return { major: (v >>> 16) & 0x7fff, minor: v & 0xffff };
}
export const PROTOCOL_VERSION = packVersion(PROTOCOL_MAJOR, PROTOCOL_MINOR);

/** Encryption mode byte in the agent's handshake reply. */
export const Mode = { None: 0, Tls: 1, Aes: 2 } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];
export const MODE_NAMES: Record<Mode, 'none' | 'ssl' | 'aes'> = { 0: 'none', 1: 'ssl', 2: 'aes' };

/** Sizes (bytes). */
export const CLIENT_HELLO_SIZE = 24;
export const AGENT_REPLY_SIZE = 9;
export const AES_IV_SIZE = 16;
export const AES_BLOCK = 16;
export const FRAME_HEADER_SIZE = 4;
/** Default and bounds for MaxMessageSize (a frame body, after the 4-byte length). */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
export const MIN_MAX_MESSAGE_SIZE = 64 * 1024;
export const MAX_MAX_MESSAGE_SIZE = 256 * 1024 * 1024;
/** Largest Stdout/Stderr event payload. */
export const MAX_OUTPUT_CHUNK = 64 * 1024;
/** Default TCP port. */
export const DEFAULT_PORT = 46336;

/**
 * The first byte of every message: whom it is for. 0 is the agent itself
 * (meta); 1–3 are product types, each served by its own host process.
 */
export const AgentType = { Meta: 0, BuildMaster: 1, Otter: 2, Hedgehog: 3 } as const;
export type AgentType = (typeof AgentType)[keyof typeof AgentType];
export const PRODUCT_TYPES = [AgentType.BuildMaster, AgentType.Otter, AgentType.Hedgehog] as const;
export type ProductType = (typeof PRODUCT_TYPES)[number];
export const AGENT_TYPE_NAMES: Record<AgentType, string> = {
  0: 'Meta',
  1: 'BuildMaster',
  2: 'Otter',
  3: 'Hedgehog',
};
export function isProductType(t: number): t is ProductType {
  return t === 1 || t === 2 || t === 3;
}

/** Third byte group of an agent→client message. */
export const Kind = { Response: 0, Error: 1, Event: 2 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** Error kinds carried by `Error` messages (int32). */
export const ErrorKind = {
  Unknown: 0,
  NotFound: 1,
  AlreadyExists: 2,
  AccessDenied: 3,
  IsDirectory: 4,
  NotDirectory: 5,
  NotEmpty: 6,
  IOError: 7,
  TooLarge: 8,
  InvalidArgument: 9,
  Unsupported: 10,
  HostCrashed: 11,
  Cancelled: 12,
  LimitExceeded: 13,
  Timeout: 14,
  UnknownCommand: 15,
  UnknownAgentType: 16,
  InvalidHandle: 17,
  Internal: 18,
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];
export type ErrorKindName = keyof typeof ErrorKind;
const ERROR_NAMES = Object.fromEntries(Object.entries(ErrorKind).map(([k, v]) => [v, k])) as Record<
  number,
  ErrorKindName
>;
/** Name of an error kind; unknown numbers map to 'Unknown'. */
export function errorKindName(kind: number): ErrorKindName {
  return ERROR_NAMES[kind] ?? 'Unknown';
}

/** Event codes for `Event` messages. */
export const EventCode = { Stdout: 1, Stderr: 2, Exited: 3 } as const;
export type EventCode = (typeof EventCode)[keyof typeof EventCode];

/** StartProcess flags (bit set). */
export const ProcessFlags = { KeepStdinOpen: 1, UseShell: 2, EmptyEnvironment: 4 } as const;

/** Entry kinds in GetFileInfo and ListDirectory results. */
export const EntryKind = { File: 1, Directory: 2, Symlink: 3, Other: 4 } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

/** .NET System.IO.FileMode values used by OpenFile. */
export const FileMode = {
  CreateNew: 1,
  Create: 2,
  Open: 3,
  OpenOrCreate: 4,
  Truncate: 5,
  Append: 6,
} as const;
export type FileMode = (typeof FileMode)[keyof typeof FileMode];
/** .NET System.IO.FileAccess values used by OpenFile. */
export const FileAccess = { Read: 1, Write: 2, ReadWrite: 3 } as const;
export type FileAccess = (typeof FileAccess)[keyof typeof FileAccess];

/** GetFileHash algorithms. */
export const HashAlgorithm = { SHA256: 1, SHA1: 2, MD5: 3 } as const;
export type HashAlgorithm = (typeof HashAlgorithm)[keyof typeof HashAlgorithm];
export const HASH_NAMES: Record<HashAlgorithm, 'sha256' | 'sha1' | 'md5'> = {
  1: 'sha256',
  2: 'sha1',
  3: 'md5',
};

/** Platform byte in GetAgentInfo. */
export const Platform = { Other: 0, Windows: 1, Linux: 2, MacOS: 3 } as const;
