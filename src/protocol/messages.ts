/**
 * The message catalog (PROTOCOL.md §5): every meta and product command with
 * its request and result schema, every event, and the envelopes around them.
 * One table; encoders, decoders, handler tables and tests are all derived
 * from it.
 *
 * Envelopes (a *message* is a frame without its length, see frames.ts):
 *   client → agent   byte agentType | int32 command | data
 *   agent → client   int32 command | data
 * Meta data has no token. Product request data starts with `int32 token`;
 * the agent answers with command 100 Response (`token | result`), 101 Error
 * (`token | string kind | string message | nullable<string> detail`) or
 * 102 Event (`token | byte eventKind | payload`). A meta request is answered
 * with its own code (`data` = result) or 9 MetaError
 * (`int32 requestCommand | string message`), in the order received.
 *
 * Decoders ignore bytes after the fields a message defines (room for later
 * versions, §5); encoders never write them.
 */
import { BinaryReader, BinaryWriter } from './binary.js';
import {
  AGENT_HEADER_SIZE,
  AgentType,
  CLIENT_HEADER_SIZE,
  type ErrorKindName,
  EventCode,
  isProductType,
  META_ERROR,
  ReplyCode,
} from './constants.js';
import { ProtocolError } from './errors.js';
import { array, type Infer, map, nullable, readValue, type Schema, struct, writeValue } from './schema.js';

interface CommandDef {
  readonly code: number;
  readonly request: Schema;
  readonly result: Schema;
  /** The command has no reply of its own (UpdateAgent on success, Cancel). */
  readonly noReply?: true;
  /** An Outpost extension on a code the contract leaves free (docs/PROTOCOL.md). */
  readonly extension?: true;
}
const cmd = <const Q extends Schema, const R extends Schema>(code: number, request: Q, result: R) => ({
  code,
  request,
  result,
});
const ext = <const Q extends Schema, const R extends Schema>(code: number, request: Q, result: R) => ({
  code,
  request,
  result,
  extension: true as const,
});
const EMPTY = struct();
const noReply = <const Q extends Schema>(code: number, request: Q) => ({
  code,
  request,
  result: EMPTY,
  noReply: true as const,
});

/** `UpdateFile` = string fileName, datetime lastWriteUtc, bytes contents. */
export const UPDATE_FILE = struct(
  ['fileName', 'string'],
  ['lastWriteUtc', 'datetime'],
  ['contents', 'bytes'],
);

/** `AgentInfo` (§5.1). */
export const AGENT_INFO = struct(
  ['product', 'string'],
  ['version', 'string'],
  ['protocolVersion', 'i32'],
  ['hostName', 'string'],
  ['platform', 'string'],
  ['osRelease', 'string'],
  ['arch', 'string'],
  ['processId', 'i32'],
  ['uptimeMs', 'i64'],
  ['supportedAgentTypes', 'bytes'],
  ['encryptionMode', 'u8'],
);

/** `FileEntry` = string fullPath, bool isDirectory, int64 size, datetime lastWriteUtc, int32 mode. */
export const FILE_ENTRY = struct(
  ['fullPath', 'string'],
  ['isDirectory', 'bool'],
  ['size', 'i64'],
  ['lastWriteUtc', 'datetime'],
  ['mode', 'i32'],
);

/** A process of ListAgentProcesses (extension). */
export const AGENT_PROCESS = struct(
  ['sessionId', 'i32'],
  ['token', 'i32'],
  ['pid', 'i32'],
  ['command', 'string'],
  ['startedUtc', 'datetime'],
  ['running', 'bool'],
  ['detached', 'bool'],
  ['attached', 'bool'],
);

/** Meta commands: agent type 0, answered by the agent itself, in order (§5.1). */
export const META_COMMANDS = {
  // byte targetType | array<UpdateFile> binaries | array<UpdateFile> extensions → no reply on success
  UpdateAgent: noReply(
    1,
    struct(['targetType', 'u8'], ['binaries', array(UPDATE_FILE)], ['extensions', array(UPDATE_FILE)]),
  ),
  // byte agentType → 2: string path
  GetAgentRootPath: cmd(2, struct(['agentType', 'u8']), struct(['path', 'string'])),
  // int32 token → 3: int32 token
  Ping: cmd(3, struct(['token', 'i32']), struct(['token', 'i32'])),
  // — → 4: AgentInfo
  GetAgentInfo: cmd(4, EMPTY, AGENT_INFO),
  // — → 5: (empty), then the agent ends the session and closes the connection
  CloseSession: cmd(5, EMPTY, EMPTY),
  /** Extension: int32 detachedTimeoutMs → 6: int32 granted (capped by MaxDetachedSessionTimeout). */
  SetSessionOptions: ext(6, struct(['detachedTimeoutMs', 'i32']), struct(['detachedTimeoutMs', 'i32'])),
  /** Extension: — → 7: the running processes of every session of the caller's principal. */
  ListAgentProcesses: ext(7, EMPTY, struct(['processes', array(AGENT_PROCESS)])),
  /** Extension: int32 sessionId | int32 token | bool entireTree → 8: (empty); the process is signalled. */
  KillProcess: ext(8, struct(['sessionId', 'i32'], ['token', 'i32'], ['entireTree', 'bool']), EMPTY),
  /**
   * Extension: int32 token → 10: (empty). The process of `token` in this
   * session is detached: its output is kept (bounded; at the bound it is
   * paused) for an AttachProcess, not handed to the next connection.
   */
  DetachProcess: ext(10, struct(['token', 'i32']), EMPTY),
  /** Extension: int32 token → 11: (empty), then everything kept for it, then its live output, on this connection. */
  AttachProcess: ext(11, struct(['token', 'i32']), EMPTY),
} as const satisfies Record<string, CommandDef>;

/** Product commands: agent types 1–3, served by the session's host process (§5.2). */
export const PRODUCT_COMMANDS = {
  GetBaseWorkingDirectory: cmd(1, EMPTY, struct(['path', 'string'])),
  FileExists: cmd(2, struct(['path', 'string']), struct(['exists', 'bool'])),
  DirectoryExists: cmd(3, struct(['path', 'string']), struct(['exists', 'bool'])),
  GetFileInfo: cmd(4, struct(['path', 'string']), struct(['entry', nullable(FILE_ENTRY)])),
  ListDirectory: cmd(
    5,
    struct(
      ['path', 'string'],
      ['recursive', 'bool'],
      ['include', array('string')],
      ['exclude', array('string')],
    ),
    struct(['entries', array(FILE_ENTRY)]),
  ),
  CreateDirectory: cmd(6, struct(['path', 'string']), EMPTY),
  DeleteFile: cmd(7, struct(['path', 'string']), EMPTY),
  DeleteDirectory: cmd(8, struct(['path', 'string'], ['recursive', 'bool']), EMPTY),
  ClearDirectory: cmd(9, struct(['path', 'string']), EMPTY),
  Move: cmd(10, struct(['source', 'string'], ['target', 'string'], ['overwrite', 'bool']), EMPTY),
  CopyFile: cmd(11, struct(['source', 'string'], ['target', 'string'], ['overwrite', 'bool']), EMPTY),
  ReadAllBytes: cmd(12, struct(['path', 'string']), struct(['contents', 'bytes'])),
  WriteAllBytes: cmd(
    13,
    struct(
      ['path', 'string'],
      ['contents', 'bytes'],
      ['lastWriteUtc', nullable('datetime')],
      ['mode', nullable('i32')],
    ),
    EMPTY,
  ),
  OpenFile: cmd(
    14,
    struct(['path', 'string'], ['fileMode', 'u8'], ['access', 'u8']),
    struct(['handle', 'i32']),
  ),
  ReadFile: cmd(
    15,
    struct(['handle', 'i32'], ['position', 'i64'], ['maxCount', 'i32']),
    struct(['data', 'bytes']),
  ),
  WriteFile: cmd(16, struct(['handle', 'i32'], ['position', 'i64'], ['data', 'bytes']), EMPTY),
  CloseFile: cmd(17, struct(['handle', 'i32']), EMPTY),
  GetFileHash: cmd(18, struct(['path', 'string'], ['algorithm', 'string']), struct(['hash', 'string'])),
  SetLastWriteTime: cmd(19, struct(['path', 'string'], ['lastWriteUtc', 'datetime']), EMPTY),
  SetMode: cmd(20, struct(['path', 'string'], ['mode', 'i32']), EMPTY),
  /** Extension: deletes many files in one request (no error for absent ones). */
  DeleteFiles: ext(21, struct(['paths', array('string')]), EMPTY),
  StartProcess: cmd(
    40,
    struct(
      ['fileName', 'string'],
      ['args', array('string')],
      ['workingDirectory', nullable('string')],
      ['environment', map('string')],
      ['flags', 'u8'],
    ),
    struct(['osProcessId', 'i32']),
  ),
  WriteStdin: cmd(41, struct(['processToken', 'i32'], ['data', 'bytes'], ['close', 'bool']), EMPTY),
  TerminateProcess: cmd(42, struct(['processToken', 'i32'], ['entireTree', 'bool']), EMPTY),
  GetEnvironmentVariable: cmd(43, struct(['name', 'string']), struct(['value', nullable('string')])),
  /** Extension: the session's processes in this host. */
  ListProcesses: ext(
    44,
    EMPTY,
    struct([
      'processes',
      array(struct(['token', 'i32'], ['pid', 'i32'], ['fileName', 'string'], ['running', 'bool'])),
    ]),
  ),
  ExecuteJob: cmd(60, struct(['jobType', 'string'], ['payload', 'bytes']), struct(['result', 'bytes'])),
  Cancel: noReply(99, struct(['targetToken', 'i32'])),
} as const satisfies Record<string, CommandDef>;

/** Events: agent → client (102), on the token of the request that caused them. */
export const EVENTS = {
  Stdout: { code: EventCode.Stdout, body: struct(['data', 'bytes']) },
  Stderr: { code: EventCode.Stderr, body: struct(['data', 'bytes']) },
  Exited: { code: EventCode.Exited, body: struct(['exitCode', 'i32'], ['signal', nullable('string')]) },
  Log: { code: EventCode.Log, body: struct(['level', 'u8'], ['text', 'string']) },
  /** Extension: bytes a job streams on its token before its Response. */
  JobData: { code: EventCode.JobData, body: struct(['data', 'bytes']) },
} as const;

export type MetaCommand = keyof typeof META_COMMANDS;
export type ProductCommand = keyof typeof PRODUCT_COMMANDS;
export type CommandName = MetaCommand | ProductCommand;
type AllCommands = typeof META_COMMANDS & typeof PRODUCT_COMMANDS;
export type RequestOf<N extends CommandName> = Infer<AllCommands[N]['request']>;
/** The result of a command (empty for commands with no reply). */
export type ResultOf<N extends CommandName> = Infer<AllCommands[N]['result']>;
export type EventName = keyof typeof EVENTS;
export type EventOf<N extends EventName> = Infer<(typeof EVENTS)[N]['body']>;
export type FileEntry = Infer<typeof FILE_ENTRY>;
export type AgentInfo = Infer<typeof AGENT_INFO>;
export type UpdateFile = Infer<typeof UPDATE_FILE>;

const META_BY_CODE = new Map<number, MetaCommand>(
  Object.entries(META_COMMANDS).map(([n, d]) => [d.code, n as MetaCommand]),
);
const PRODUCT_BY_CODE = new Map<number, ProductCommand>(
  Object.entries(PRODUCT_COMMANDS).map(([n, d]) => [d.code, n as ProductCommand]),
);
const EVENT_BY_CODE = new Map<number, EventName>(
  Object.entries(EVENTS).map(([n, d]) => [d.code, n as EventName]),
);

/** True when the command gets no reply of its own. */
export function hasNoReply(name: CommandName): boolean {
  return (commandDef(name) as CommandDef).noReply === true;
}
export function isMetaCommand(name: string): name is MetaCommand {
  return Object.hasOwn(META_COMMANDS, name);
}
export function isProductCommand(name: string): name is ProductCommand {
  return Object.hasOwn(PRODUCT_COMMANDS, name);
}
export function commandDef(name: CommandName): CommandDef {
  return isMetaCommand(name) ? META_COMMANDS[name] : PRODUCT_COMMANDS[name as ProductCommand];
}
export function metaCommandName(code: number): MetaCommand | undefined {
  return META_BY_CODE.get(code);
}
export function productCommandName(code: number): ProductCommand | undefined {
  return PRODUCT_BY_CODE.get(code);
}
/** Command name for (agent type, code), or undefined if there is none. */
export function commandName(agentType: number, code: number): CommandName | undefined {
  if (agentType === AgentType.Meta) return META_BY_CODE.get(code);
  return isProductType(agentType) ? PRODUCT_BY_CODE.get(code) : undefined;
}
export function eventName(code: number): EventName | undefined {
  return EVENT_BY_CODE.get(code);
}
/** "Move (10)" or "command 77", for messages. */
export function describeCommand(agentType: number, code: number): string {
  const name = commandName(agentType, code);
  return name ? `${name} (${code})` : `command ${code}`;
}

function readLenient(schema: Schema, data: Uint8Array, offset = 0): unknown {
  const r = new BinaryReader(data);
  if (offset) r.raw(offset);
  return readValue(r, schema);
}

// ------------------------------------------------------- client → agent

export const TOKEN_SIZE = 4;

/** A client message split into its header and data (the data is a view). */
export interface ClientMessage {
  agentType: number;
  command: number;
  data: Buffer;
}

export function encodeClientMessage(agentType: number, command: number, data: Uint8Array): Buffer {
  const w = new BinaryWriter(CLIENT_HEADER_SIZE + data.length);
  w.u8(agentType).i32(command).raw(data);
  return w.view();
}

/** Splits a client message without judging agent type or command. */
export function decodeClientMessage(msg: Uint8Array): ClientMessage {
  const r = new BinaryReader(msg);
  const agentType = r.u8();
  const command = r.i32();
  return { agentType, command, data: r.rest() };
}

/** A meta request; the agent answers it with its own code (or MetaError), in order. */
export function encodeMetaRequest<N extends MetaCommand>(name: N, args: RequestOf<N>): Buffer {
  const def = META_COMMANDS[name];
  const w = new BinaryWriter(64);
  w.u8(AgentType.Meta).i32(def.code);
  writeValue(w, def.request, args, name);
  return w.view();
}

/** A product request for `agentType` (1–3) with the client's token. */
export function encodeProductRequest<N extends ProductCommand>(
  agentType: number,
  name: N,
  token: number,
  args: RequestOf<N>,
): Buffer {
  return productRequestWriter(agentType, name, token, args, Number.POSITIVE_INFINITY).view();
}

/**
 * Byte arrays at least this long are sent by reference, not copied into
 * their message, by the `…Pieces` encoders (bulk data: file chunks, output).
 */
export const REFERENCE_FROM = 16 * 1024;

/** `encodeProductRequest` as pieces: a large byte array (WriteFile data) is referenced, not copied. */
export function encodeProductRequestPieces<N extends ProductCommand>(
  agentType: number,
  name: N,
  token: number,
  args: RequestOf<N>,
): Buffer[] {
  return productRequestWriter(agentType, name, token, args, REFERENCE_FROM).pieces();
}

function productRequestWriter<N extends ProductCommand>(
  agentType: number,
  name: N,
  token: number,
  args: RequestOf<N>,
  refFrom: number,
): BinaryWriter {
  const def = PRODUCT_COMMANDS[name];
  const w = new BinaryWriter(64, refFrom);
  w.u8(agentType).i32(def.code).i32(token);
  writeValue(w, def.request, args, name);
  return w;
}

/** The token at the start of product data, or null when the data is too short to hold one. */
export function readToken(data: Uint8Array): number | null {
  if (data.length < TOKEN_SIZE) return null;
  return data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24) | 0;
}

/** Decodes a meta request's data (bytes after its fields are ignored). */
export function decodeMetaArgs<N extends MetaCommand>(name: N, data: Uint8Array): RequestOf<N> {
  return readLenient(META_COMMANDS[name].request, data) as RequestOf<N>;
}

/** Decodes a product request's arguments from its data (token included, skipped). */
export function decodeProductArgs<N extends ProductCommand>(name: N, data: Uint8Array): RequestOf<N> {
  if (data.length < TOKEN_SIZE) throw new ProtocolError('TRUNCATED', 'product data is shorter than a token');
  return readLenient(PRODUCT_COMMANDS[name].request, data, TOKEN_SIZE) as RequestOf<N>;
}

/** Why a client message is not a well-formed request (§3, "The first frame proves the key"). */
export type RequestProblem = 'agent-type' | 'command' | 'token' | 'arguments';

/**
 * Judges a client message as the first-frame rule does: a known agent type,
 * a command of the catalog (contract or extension), a token for product
 * messages, and arguments that decode. Returns null when it is well-formed.
 */
export function requestProblem(msg: ClientMessage): RequestProblem | null {
  const name = commandName(msg.agentType, msg.command);
  if (msg.agentType !== AgentType.Meta && !isProductType(msg.agentType)) return 'agent-type';
  if (!name) return msg.agentType !== AgentType.Meta && msg.data.length < TOKEN_SIZE ? 'token' : 'command';
  try {
    if (isMetaCommand(name)) decodeMetaArgs(name, msg.data);
    else {
      if (msg.data.length < TOKEN_SIZE) return 'token';
      decodeProductArgs(name, msg.data);
    }
  } catch {
    return 'arguments';
  }
  return null;
}

/** The one answer to a product command nobody knows: `Error Unsupported` naming it (§5.2). */
export function encodeUnknownCommand(token: number, agentType: number, command: number): Buffer {
  const product = isProductType(agentType) ? PRODUCT_TYPE_LABELS[agentType] : `agent type ${agentType}`;
  return encodeError(
    token,
    'Unsupported',
    `unknown ${product} command ${command}: this agent does not implement it`,
  );
}
const PRODUCT_TYPE_LABELS: Record<1 | 2 | 3, string> = { 1: 'Otter', 2: 'BuildMaster', 3: 'Hedgehog' };

// ------------------------------------------------------- agent → client

/** An agent message split into its command and data (a view). */
export interface AgentMessage {
  command: number;
  data: Buffer;
}

export function decodeAgentMessage(msg: Uint8Array): AgentMessage {
  const r = new BinaryReader(msg);
  const command = r.i32();
  return { command, data: r.rest() };
}

export function encodeAgentMessage(command: number, data: Uint8Array): Buffer {
  const w = new BinaryWriter(AGENT_HEADER_SIZE + data.length);
  w.i32(command).raw(data);
  return w.view();
}

/** A meta command's reply, under its own code. */
export function encodeMetaReply<N extends MetaCommand>(name: N, result: ResultOf<N>): Buffer {
  const def: CommandDef = META_COMMANDS[name];
  const w = new BinaryWriter(64);
  w.i32(def.code);
  writeValue(w, def.result, result, name);
  return w.view();
}

export function encodeMetaError(requestCommand: number, message: string): Buffer {
  const w = new BinaryWriter(16 + message.length);
  w.i32(META_ERROR).i32(requestCommand).string(message);
  return w.view();
}

export function decodeMetaResult<N extends MetaCommand>(name: N, data: Uint8Array): ResultOf<N> {
  return readLenient(META_COMMANDS[name].result, data) as ResultOf<N>;
}

export function decodeMetaError(data: Uint8Array): { requestCommand: number; message: string } {
  const r = new BinaryReader(data);
  return { requestCommand: r.i32(), message: r.string() };
}

/** A Response whose result bytes are already encoded. */
export function encodeResponseRaw(token: number, body: Uint8Array): Buffer {
  const w = new BinaryWriter(AGENT_HEADER_SIZE + TOKEN_SIZE + body.length);
  w.i32(ReplyCode.Response).i32(token).raw(body);
  return w.view();
}

/** A Response carrying a command's typed result, encoded in one pass. */
export function encodeResponse<N extends ProductCommand>(
  token: number,
  name: N,
  result: ResultOf<N>,
): Buffer {
  return responseWriter(token, name, result, Number.POSITIVE_INFINITY).view();
}

/** `encodeResponse` as pieces: a large byte array (ReadFile data) is referenced, not copied. */
export function encodeResponsePieces<N extends ProductCommand>(
  token: number,
  name: N,
  result: ResultOf<N>,
): Buffer[] {
  return responseWriter(token, name, result, REFERENCE_FROM).pieces();
}

function responseWriter<N extends ProductCommand>(
  token: number,
  name: N,
  result: ResultOf<N>,
  refFrom: number,
): BinaryWriter {
  const w = new BinaryWriter(64, refFrom);
  w.i32(ReplyCode.Response).i32(token);
  writeValue(w, PRODUCT_COMMANDS[name].result, result, name);
  return w;
}

export function encodeError(
  token: number,
  kind: ErrorKindName | string,
  message: string,
  detail: string | null = null,
): Buffer {
  const w = new BinaryWriter(32 + kind.length + message.length + (detail?.length ?? 0));
  w.i32(ReplyCode.Error).i32(token).string(kind).string(message);
  if (detail === null) w.bool(false);
  else w.bool(true).string(detail);
  return w.view();
}

export function encodeEventRaw(token: number, eventKind: number, body: Uint8Array): Buffer {
  const w = new BinaryWriter(AGENT_HEADER_SIZE + TOKEN_SIZE + 1 + body.length);
  w.i32(ReplyCode.Event).i32(token).u8(eventKind).raw(body);
  return w.view();
}

export function encodeEvent<N extends EventName>(token: number, name: N, payload: EventOf<N>): Buffer {
  return eventWriter(token, name, payload, Number.POSITIVE_INFINITY).view();
}

/** `encodeEvent` as pieces: a large byte array (process output) is referenced, not copied. */
export function encodeEventPieces<N extends EventName>(
  token: number,
  name: N,
  payload: EventOf<N>,
): Buffer[] {
  return eventWriter(token, name, payload, REFERENCE_FROM).pieces();
}

function eventWriter<N extends EventName>(
  token: number,
  name: N,
  payload: EventOf<N>,
  refFrom: number,
): BinaryWriter {
  const w = new BinaryWriter(64, refFrom);
  w.i32(ReplyCode.Event).i32(token).u8(EVENTS[name].code);
  writeValue(w, EVENTS[name].body, payload, name);
  return w;
}

/** Every agent → client message, decoded as far as the envelope goes. */
export type Reply =
  | { kind: 'response'; token: number; body: Buffer }
  | { kind: 'error'; token: number; errorKind: string; message: string; detail: string | null }
  | { kind: 'event'; token: number; event: number; body: Buffer }
  | { kind: 'meta'; command: number; body: Buffer }
  | { kind: 'meta-error'; requestCommand: number; message: string };

export function decodeReply(msg: Uint8Array): Reply {
  const r = new BinaryReader(msg);
  const command = r.i32();
  switch (command) {
    case ReplyCode.Response: {
      const token = r.i32();
      return { kind: 'response', token, body: r.rest() };
    }
    case ReplyCode.Error: {
      const token = r.i32();
      const errorKind = r.string();
      const message = r.string();
      const detail = r.bool() ? r.string() : null;
      return { kind: 'error', token, errorKind, message, detail };
    }
    case ReplyCode.Event: {
      const token = r.i32();
      const event = r.u8();
      return { kind: 'event', token, event, body: r.rest() };
    }
    case META_ERROR: {
      const requestCommand = r.i32();
      const message = r.string();
      return { kind: 'meta-error', requestCommand, message };
    }
    default:
      if (!META_BY_CODE.has(command))
        throw new ProtocolError('UNKNOWN_COMMAND', `unknown agent message code ${command}`);
      return { kind: 'meta', command, body: r.rest() };
  }
}

/** Decodes a Response's result bytes (the part after the token). */
export function decodeResult<N extends ProductCommand>(name: N, body: Uint8Array): ResultOf<N> {
  return readLenient(PRODUCT_COMMANDS[name].result, body) as ResultOf<N>;
}

export function decodeEventBody<N extends EventName>(name: N, body: Uint8Array): EventOf<N> {
  return readLenient(EVENTS[name].body, body) as EventOf<N>;
}

/** The reply code, token and (for events) event kind of an agent message, without decoding the rest. */
export function peekReply(msg: Uint8Array): { command: number; token: number; event: number } {
  if (msg.length < AGENT_HEADER_SIZE) return { command: -1, token: 0, event: -1 };
  const b = Buffer.isBuffer(msg) ? msg : Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const command = b.readInt32LE(0);
  const product =
    command === ReplyCode.Response || command === ReplyCode.Error || command === ReplyCode.Event;
  const token = product && b.length >= AGENT_HEADER_SIZE + TOKEN_SIZE ? b.readInt32LE(AGENT_HEADER_SIZE) : 0;
  const event =
    command === ReplyCode.Event && b.length > AGENT_HEADER_SIZE + TOKEN_SIZE
      ? b[AGENT_HEADER_SIZE + TOKEN_SIZE]!
      : -1;
  return { command, token, event };
}
