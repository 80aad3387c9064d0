/**
 * The message catalog (PROTOCOL.md §5): every meta and product command with
 * its request and result schema, every event, and the envelopes around them.
 * One table; encoders, decoders and tests are all derived from it.
 */
import { BinaryReader, BinaryWriter } from './binary.js';
import { AgentType, type ErrorKind, EventCode, Kind } from './constants.js';
import { ProtocolError } from './errors.js';
import { array, type Infer, map, nullable, readValue, type Schema, struct, writeValue } from './schema.js';

interface CommandDef {
  readonly code: number;
  readonly request: Schema;
  readonly result: Schema;
}
const cmd = <const Q extends Schema, const R extends Schema>(code: number, request: Q, result: R) => ({
  code,
  request,
  result,
});
const EMPTY = struct();

/** A directory entry or file information. */
const ENTRY_FIELDS = [
  ['kind', 'u8'],
  ['size', 'i64'],
  ['lastWriteTime', 'datetime'],
  ['mode', 'i32'],
] as const;

/** Meta commands: agent type 0, answered by the agent itself (§5.1). */
export const META_COMMANDS = {
  Ping: cmd(1, EMPTY, EMPTY),
  GetAgentInfo: cmd(
    2,
    EMPTY,
    struct(
      ['agentVersion', 'string'],
      ['protocolVersion', 'i32'],
      ['hostname', 'string'],
      ['platform', 'u8'],
      ['osDescription', 'string'],
      ['architecture', 'string'],
      ['processorCount', 'i32'],
      ['directorySeparator', 'string'],
      ['maxMessageSize', 'i32'],
    ),
  ),
  GetAgentRootPath: cmd(3, struct(['agentType', 'u8']), struct(['path', 'string'])),
  CloseSession: cmd(4, EMPTY, EMPTY),
  UpdateAgent: cmd(
    5,
    struct(
      ['instance', 'string'],
      ['product', 'u8'],
      ['files', array(struct(['name', 'string'], ['data', 'bytes']))],
    ),
    EMPTY,
  ),
} as const satisfies Record<string, CommandDef>;

/** Product commands: agent types 1–3, served by the session's host process (§5.2). */
export const PRODUCT_COMMANDS = {
  FileExists: cmd(1, struct(['path', 'string']), struct(['exists', 'bool'])),
  DirectoryExists: cmd(2, struct(['path', 'string']), struct(['exists', 'bool'])),
  GetFileInfo: cmd(3, struct(['path', 'string']), struct(...ENTRY_FIELDS)),
  ListDirectory: cmd(
    4,
    struct(
      ['path', 'string'],
      ['recursive', 'bool'],
      ['include', array('string')],
      ['exclude', array('string')],
    ),
    struct(['entries', array(struct(['name', 'string'], ...ENTRY_FIELDS))]),
  ),
  CreateDirectory: cmd(5, struct(['path', 'string']), EMPTY),
  DeleteFile: cmd(6, struct(['path', 'string']), EMPTY),
  DeleteDirectory: cmd(7, struct(['path', 'string'], ['recursive', 'bool']), EMPTY),
  ClearDirectory: cmd(8, struct(['path', 'string']), EMPTY),
  Move: cmd(9, struct(['source', 'string'], ['destination', 'string'], ['overwrite', 'bool']), EMPTY),
  CopyFile: cmd(10, struct(['source', 'string'], ['destination', 'string'], ['overwrite', 'bool']), EMPTY),
  ReadAllBytes: cmd(11, struct(['path', 'string']), struct(['data', 'bytes'])),
  WriteAllBytes: cmd(
    12,
    struct(
      ['path', 'string'],
      ['data', 'bytes'],
      ['mode', nullable('i32')],
      ['lastWriteTime', nullable('datetime')],
    ),
    EMPTY,
  ),
  OpenFile: cmd(
    13,
    struct(['path', 'string'], ['fileMode', 'i32'], ['fileAccess', 'i32']),
    struct(['handle', 'i32']),
  ),
  ReadFile: cmd(
    14,
    struct(['handle', 'i32'], ['position', 'i64'], ['count', 'i32']),
    struct(['data', 'bytes']),
  ),
  WriteFile: cmd(15, struct(['handle', 'i32'], ['position', 'i64'], ['data', 'bytes']), EMPTY),
  CloseFile: cmd(16, struct(['handle', 'i32']), EMPTY),
  GetFileHash: cmd(17, struct(['path', 'string'], ['algorithm', 'u8']), struct(['hash', 'bytes'])),
  SetLastWriteTime: cmd(18, struct(['path', 'string'], ['lastWriteTime', 'datetime']), EMPTY),
  SetMode: cmd(19, struct(['path', 'string'], ['mode', 'i32']), EMPTY),
  DeleteFiles: cmd(20, struct(['paths', array('string')]), EMPTY),
  StartProcess: cmd(
    40,
    struct(
      ['fileName', 'string'],
      ['arguments', array('string')],
      ['workingDirectory', nullable('string')],
      ['environment', map('string')],
      ['flags', 'i32'],
    ),
    struct(['pid', 'i32']),
  ),
  WriteStdin: cmd(41, struct(['process', 'i32'], ['data', 'bytes'], ['close', 'bool']), EMPTY),
  TerminateProcess: cmd(42, struct(['process', 'i32'], ['entireTree', 'bool']), EMPTY),
  ListProcesses: cmd(
    43,
    EMPTY,
    struct([
      'processes',
      array(struct(['token', 'i32'], ['pid', 'i32'], ['fileName', 'string'], ['running', 'bool'])),
    ]),
  ),
  Cancel: cmd(99, struct(['token', 'i32']), EMPTY),
} as const satisfies Record<string, CommandDef>;

/** Events: agent → client, on the token of the request that caused them. */
export const EVENTS = {
  Stdout: { code: EventCode.Stdout, body: struct(['data', 'bytes']) },
  Stderr: { code: EventCode.Stderr, body: struct(['data', 'bytes']) },
  Exited: {
    code: EventCode.Exited,
    body: struct(['exitCode', nullable('i32')], ['signal', nullable('string')]),
  },
} as const;

export type MetaCommand = keyof typeof META_COMMANDS;
export type ProductCommand = keyof typeof PRODUCT_COMMANDS;
export type CommandName = MetaCommand | ProductCommand;
type AllCommands = typeof META_COMMANDS & typeof PRODUCT_COMMANDS;
export type RequestOf<N extends CommandName> = Infer<AllCommands[N]['request']>;
export type ResultOf<N extends CommandName> = Infer<AllCommands[N]['result']>;
export type EventName = keyof typeof EVENTS;
export type EventOf<N extends EventName> = Infer<(typeof EVENTS)[N]['body']>;

const META_BY_CODE = new Map<number, MetaCommand>(
  Object.entries(META_COMMANDS).map(([n, d]) => [d.code, n as MetaCommand]),
);
const PRODUCT_BY_CODE = new Map<number, ProductCommand>(
  Object.entries(PRODUCT_COMMANDS).map(([n, d]) => [d.code, n as ProductCommand]),
);
const EVENT_BY_CODE = new Map<number, EventName>(
  Object.entries(EVENTS).map(([n, d]) => [d.code, n as EventName]),
);

export function isMetaCommand(name: string): name is MetaCommand {
  return Object.hasOwn(META_COMMANDS, name);
}
export function commandDef(name: CommandName): CommandDef {
  return isMetaCommand(name) ? META_COMMANDS[name] : PRODUCT_COMMANDS[name as ProductCommand];
}
/** Command name for (agent type, code), or undefined if there is none. */
export function commandName(agentType: number, code: number): CommandName | undefined {
  return agentType === AgentType.Meta ? META_BY_CODE.get(code) : PRODUCT_BY_CODE.get(code);
}
export function eventName(code: number): EventName | undefined {
  return EVENT_BY_CODE.get(code);
}

// ---------------------------------------------------------------- envelopes

/** Client → agent: `u8 agentType | i32 token | u8 command | body`. */
export interface RequestHeader {
  agentType: number;
  token: number;
  command: number;
  /** The command's argument bytes (a view into the message). */
  body: Buffer;
}

export const REQUEST_HEADER_SIZE = 6;
export const REPLY_HEADER_SIZE = 6;

export function encodeRequestRaw(
  agentType: number,
  token: number,
  command: number,
  body: Uint8Array,
): Buffer {
  const w = new BinaryWriter(REQUEST_HEADER_SIZE + body.length);
  w.u8(agentType).i32(token).u8(command).raw(body);
  return w.toBuffer();
}

/** Splits a request into header and body without judging agent type or command. */
export function decodeRequestHeader(msg: Uint8Array): RequestHeader {
  const r = new BinaryReader(msg);
  const agentType = r.u8();
  const token = r.i32();
  const command = r.u8();
  return { agentType, token, command, body: r.rest() };
}

/** Encodes a typed request. Meta commands always go to agent type 0. */
export function encodeRequest<N extends CommandName>(
  agentType: number,
  token: number,
  name: N,
  args: RequestOf<N>,
): Buffer {
  const def = commandDef(name);
  const w = new BinaryWriter(64);
  w.u8(isMetaCommand(name) ? AgentType.Meta : agentType)
    .i32(token)
    .u8(def.code);
  writeValue(w, def.request, args, name);
  return w.toBuffer();
}

export interface DecodedRequest {
  agentType: number;
  token: number;
  name: CommandName;
  args: Record<string, unknown>;
}

/** Decodes a whole request: unknown command codes raise UNKNOWN_COMMAND. */
export function decodeRequest(msg: Uint8Array): DecodedRequest {
  const h = decodeRequestHeader(msg);
  const name = commandName(h.agentType, h.command);
  if (!name)
    throw new ProtocolError('UNKNOWN_COMMAND', `no command ${h.command} for agent type ${h.agentType}`);
  return {
    agentType: h.agentType,
    token: h.token,
    name,
    args: decodeArgs(name, h.body) as Record<string, unknown>,
  };
}

/** Decodes a command's argument bytes; every byte must be used. */
export function decodeArgs<N extends CommandName>(name: N, body: Uint8Array): RequestOf<N> {
  const r = new BinaryReader(body);
  const v = readValue(r, commandDef(name).request);
  r.end();
  return v as RequestOf<N>;
}

export function encodeResult<N extends CommandName>(name: N, result: ResultOf<N>): Buffer {
  const w = new BinaryWriter(64);
  writeValue(w, commandDef(name).result, result, name);
  return w.toBuffer();
}

export function decodeResult<N extends CommandName>(name: N, body: Uint8Array): ResultOf<N> {
  const r = new BinaryReader(body);
  const v = readValue(r, commandDef(name).result);
  r.end();
  return v as ResultOf<N>;
}

/** Agent → client: `u8 agentType | i32 token | u8 kind | …`. */
export type Reply =
  | { kind: 'response'; agentType: number; token: number; body: Buffer }
  | { kind: 'error'; agentType: number; token: number; errorKind: number; message: string }
  | { kind: 'event'; agentType: number; token: number; event: number; body: Buffer };

export function encodeResponse(agentType: number, token: number, body: Uint8Array): Buffer {
  const w = new BinaryWriter(REPLY_HEADER_SIZE + body.length);
  w.u8(agentType).i32(token).u8(Kind.Response).raw(body);
  return w.toBuffer();
}

/** A Response carrying a command's typed result, encoded in one pass (no copy of the result body). */
export function encodeResultResponse<N extends CommandName>(
  agentType: number,
  token: number,
  name: N,
  result: ResultOf<N>,
): Buffer {
  const w = new BinaryWriter(64);
  w.u8(agentType).i32(token).u8(Kind.Response);
  writeValue(w, commandDef(name).result, result, name);
  return w.toBuffer();
}

export function encodeError(
  agentType: number,
  token: number,
  errorKind: ErrorKind | number,
  message: string,
): Buffer {
  const w = new BinaryWriter(REPLY_HEADER_SIZE + 8 + message.length);
  w.u8(agentType).i32(token).u8(Kind.Error).i32(errorKind).string(message);
  return w.toBuffer();
}

export function encodeEventRaw(agentType: number, token: number, event: number, body: Uint8Array): Buffer {
  const w = new BinaryWriter(REPLY_HEADER_SIZE + 1 + body.length);
  w.u8(agentType).i32(token).u8(Kind.Event).u8(event).raw(body);
  return w.toBuffer();
}

export function encodeEvent<N extends EventName>(
  agentType: number,
  token: number,
  name: N,
  data: EventOf<N>,
): Buffer {
  const w = new BinaryWriter(64);
  w.u8(agentType).i32(token).u8(Kind.Event).u8(EVENTS[name].code);
  writeValue(w, EVENTS[name].body, data, name);
  return w.toBuffer();
}

export function decodeReply(msg: Uint8Array): Reply {
  const r = new BinaryReader(msg);
  const agentType = r.u8();
  const token = r.i32();
  const kind = r.u8();
  switch (kind) {
    case Kind.Response:
      return { kind: 'response', agentType, token, body: r.rest() };
    case Kind.Error: {
      const errorKind = r.i32();
      const message = r.string();
      r.end();
      return { kind: 'error', agentType, token, errorKind, message };
    }
    case Kind.Event: {
      const event = r.u8();
      if (!eventName(event)) throw new ProtocolError('UNKNOWN_EVENT', `unknown event code ${event}`);
      return { kind: 'event', agentType, token, event, body: r.rest() };
    }
    default:
      throw new ProtocolError('UNKNOWN_KIND', `unknown message kind ${kind}`);
  }
}

export function decodeEventBody<N extends EventName>(name: N, body: Uint8Array): EventOf<N> {
  const r = new BinaryReader(body);
  const v = readValue(r, EVENTS[name].body);
  r.end();
  return v as EventOf<N>;
}
