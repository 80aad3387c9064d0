/**
 * Every number the wire uses, in one place (the contract, PROTOCOL.md §2–§6).
 * Nothing else in the code base may spell these as literals.
 */

/** Sent first by every client (the seed's protocol ID); an agent that reads anything else closes. */
export const PROTOCOL_GUID = '6CEBD24E-4AF7-4A13-B9AF-81D3DFC644BE';
/** The one protocol version of the contract (a plain int32, "currently hardcoded"). */
export const PROTOCOL_VERSION = 1000;

/** A four-part assembly version as the handshake packs it. */
export interface AgentVersion {
  major: number;
  minor: number;
  build: number;
  revision: number;
}

/** `major<<24 | minor<<16 | build<<8 | revision`, each part 0–255 (§2). */
export function packVersion(v: AgentVersion): number {
  const part = (n: number) => Math.max(0, Math.min(255, Math.trunc(n))) & 0xff;
  return (part(v.major) << 24) | (part(v.minor) << 16) | (part(v.build) << 8) | part(v.revision) | 0;
}
export function unpackVersion(packed: number): AgentVersion {
  const u = packed >>> 0;
  return { major: u >>> 24, minor: (u >>> 16) & 0xff, build: (u >>> 8) & 0xff, revision: u & 0xff };
}
/** "1.2.3.4" for a packed version. */
export function formatVersion(packed: number): string {
  const v = unpackVersion(packed);
  return `${v.major}.${v.minor}.${v.build}.${v.revision}`;
}
/** Packs "1.2.3" or "1.2.3.4" (missing parts are 0; a pre-release tag is ignored). */
export function parseVersion(text: string): number {
  const parts = text.split(/[.+-]/, 4).map((p) => Number.parseInt(p, 10) || 0);
  return packVersion({
    major: parts[0] ?? 0,
    minor: parts[1] ?? 0,
    build: parts[2] ?? 0,
    revision: parts[3] ?? 0,
  });
}

/** Encryption mode byte in the agent's handshake reply. */
export const Mode = { None: 0, Tls: 1, Aes: 2 } as const;
export type Mode = (typeof Mode)[keyof typeof Mode];
export const MODE_NAMES: Record<Mode, 'none' | 'ssl' | 'aes'> = { 0: 'none', 1: 'ssl', 2: 'aes' };

/** Sizes (bytes). */
export const CLIENT_HELLO_SIZE = 24;
/** The agent's reply in modes 0 and 1; mode 2 adds the 16-byte IV after the mode byte. */
export const AGENT_REPLY_SIZE = 9;
export const AGENT_REPLY_SIZE_AES = 25;
export const AES_IV_SIZE = 16;
export const AES_BLOCK = 16;
/** The int32 length in front of every frame. */
export const FRAME_LENGTH_SIZE = 4;
/** After the length: `byte agentType | int32 command` (client → agent). */
export const CLIENT_HEADER_SIZE = 5;
/** After the length: `int32 command` (agent → client). */
export const AGENT_HEADER_SIZE = 4;
/** How much longer than MaxMessageSize an AES ciphertext may be (IV, header, padding; §4). */
export const AES_FRAME_OVERHEAD = 48;
/** Smallest AES ciphertext: the IV block and one more block. */
export const AES_MIN_CIPHERTEXT = 32;
/** Default MaxMessageSize: bytes of a frame's data (§4). */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
/** Bounds a configuration may set for MaxMessageSize. */
export const MIN_MAX_MESSAGE_SIZE = 64 * 1024;
export const MAX_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024;
/** Largest Stdout/Stderr event payload Outpost sends. */
export const MAX_OUTPUT_CHUNK = 64 * 1024;
/** Default TCP port. */
export const DEFAULT_PORT = 46336;

/**
 * The first byte of every client message: whom it is for. 0 is the agent
 * itself (meta); 1–3 are product types, each served by its own host process.
 */
export const AgentType = { Meta: 0, Otter: 1, BuildMaster: 2, Hedgehog: 3 } as const;
export type AgentType = (typeof AgentType)[keyof typeof AgentType];
export const PRODUCT_TYPES = [AgentType.Otter, AgentType.BuildMaster, AgentType.Hedgehog] as const;
export type ProductType = (typeof PRODUCT_TYPES)[number];
export const AGENT_TYPE_NAMES: Record<AgentType, string> = {
  0: 'Meta',
  1: 'Otter',
  2: 'BuildMaster',
  3: 'Hedgehog',
};
/** Every agent-type value the agent accepts, meta included (GetAgentInfo.supportedAgentTypes). */
export const SUPPORTED_AGENT_TYPES = [AgentType.Meta, ...PRODUCT_TYPES] as const;
export function isProductType(t: number): t is ProductType {
  return t === 1 || t === 2 || t === 3;
}

/** Agent → client command codes of product replies (§5.2). */
export const ReplyCode = { Response: 100, Error: 101, Event: 102 } as const;
export type ReplyCode = (typeof ReplyCode)[keyof typeof ReplyCode];
/** Agent → client code of a failed meta request: `int32 requestCommand, string message`. */
export const META_ERROR = 9;

/** Error kinds carried by `Error` messages, as the strings on the wire (§5.2). */
export const ERROR_KINDS = [
  'NotFound',
  'AlreadyExists',
  'AccessDenied',
  'IsDirectory',
  'NotDirectory',
  'NotEmpty',
  'InvalidArgument',
  'TooLarge',
  'Unsupported',
  'Canceled',
  'Timeout',
  'HostCrashed',
  'IOError',
  'Internal',
  'LimitExceeded',
] as const;
export type ErrorKindName = (typeof ERROR_KINDS)[number];
/** `ErrorKind.NotFound === 'NotFound'`: the names, spelled once. */
export const ErrorKind = Object.fromEntries(ERROR_KINDS.map((k) => [k, k])) as {
  readonly [K in ErrorKindName]: K;
};
export function isErrorKind(kind: string): kind is ErrorKindName {
  return (ERROR_KINDS as readonly string[]).includes(kind);
}

/** Event kinds for `Event` messages (§5.2). */
export const EventCode = {
  Stdout: 1,
  Stderr: 2,
  Exited: 3,
  Log: 4,
  /** Extension (docs/PROTOCOL.md): bytes a job streams before its result (outpost.manifest's NDJSON). */
  JobData: 5,
} as const;
export type EventCode = (typeof EventCode)[keyof typeof EventCode];

/** Exit code reported for a process ended by a signal (its name travels beside it). */
export const SIGNAL_EXIT_CODE = -1;

/** StartProcess flags (a byte of bits). */
export const ProcessFlags = { KeepStdinOpen: 1, UseShell: 2, EmptyEnvironment: 4 } as const;

/** Job log levels (Log event). */
export const LogLevel = { Debug: 0, Info: 1, Warning: 2, Error: 3 } as const;
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel];

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

/** GetFileHash algorithm names (the result is lower-case hex). */
export const HASH_ALGORITHMS = ['sha256', 'sha1', 'md5'] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];
export function isHashAlgorithm(name: string): name is HashAlgorithm {
  return (HASH_ALGORITHMS as readonly string[]).includes(name);
}

/** Product directory names under ExtensionCachePath (§5.1). */
export const PRODUCT_NAMES: Record<ProductType, 'Otter' | 'BuildMaster' | 'Hedgehog'> = {
  1: 'Otter',
  2: 'BuildMaster',
  3: 'Hedgehog',
};
