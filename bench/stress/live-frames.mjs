/**
 * The frames of the live section (live.mjs): what it sends — generated from
 * the catalog, filtered to what is harmless even as `nobody` — and the
 * oracle that says what the contract (§3–§6) answers to each.
 */
import {
  AgentType,
  decodeClientMessage,
  decodeMetaArgs,
  decodeProductArgs,
  encodeClientMessage,
  encodeMetaRequest,
  encodeProductRequest,
  isProductType,
  META_COMMANDS,
  metaCommandName,
  PRODUCT_COMMANDS,
  productCommandName,
  requestProblem,
} from '../../dist/protocol/index.js';
import { EDGE_I32, genValue, mutate } from './gen.mjs';

const MAX_MESSAGE = 64 * 1024 * 1024;
/** Programs a generated StartProcess may run (anything else is not sent): harmless, even as nobody. */
export const SAFE_PROGRAMS = [
  'true',
  'false',
  'echo',
  '/bin/echo',
  'cat',
  'sleep',
  'printf',
  'pwd',
  'no-such-program-x',
];

/** What the contract answers to one client message (see the file header). */
export function expectation(message, mode, valid) {
  const msg = decodeClientMessage(message);
  const problem = requestProblem(msg);
  const becomesValid = problem === null;
  // §3: in mode aes, before the first valid frame, any failure is a silent close.
  if (mode === 'aes' && !valid && problem !== null) return { kind: 'fatal', becomesValid };
  if (msg.agentType === AgentType.Meta) {
    const name = metaCommandName(msg.command);
    if (!name) return { kind: 'meta', reply: 'meta-error', cmd: msg.command, becomesValid };
    let args;
    try {
      args = decodeMetaArgs(name, msg.data);
    } catch {
      return { kind: 'fatal', becomesValid }; // §6: a malformed meta message
    }
    if (name === 'CloseSession') return { kind: 'close-session', becomesValid };
    if (name === 'UpdateAgent')
      return { kind: 'meta', reply: 'meta-error', cmd: 1, optional: true, becomesValid };
    return {
      kind: 'meta',
      reply: 'either',
      cmd: msg.command,
      pingToken: name === 'Ping' ? args.token : undefined,
      becomesValid,
    };
  }
  if (!isProductType(msg.agentType))
    return { kind: 'meta', reply: 'meta-error', cmd: msg.command, becomesValid };
  if (msg.data.length < 4) return { kind: 'fatal', becomesValid };
  const token = msg.data.readInt32LE(0);
  const name = productCommandName(msg.command);
  // Cancel has no reply; one whose arguments do not decode may get InvalidArgument.
  if (name === 'Cancel') return { kind: 'product', token, optional: true, becomesValid };
  return { kind: 'product', token, becomesValid };
}

/** False for a frame this suite does not send: a StartProcess of anything but a harmless program, a locking SetMode. */
export function safe(message) {
  const msg = decodeClientMessage(message);
  const name = isProductType(msg.agentType) ? productCommandName(msg.command) : undefined;
  try {
    if (name === 'StartProcess') return SAFE_PROGRAMS.includes(decodeProductArgs(name, msg.data).fileName);
    // A SetMode that takes the owner's rwx from a product root path locks every session of the
    // agent out of it (the hosts cannot start): legal, but it would measure the fuzzer, not the agent.
    if (name === 'SetMode') return (decodeProductArgs(name, msg.data).mode & 0o700) === 0o700;
  } catch {
    // answered InvalidArgument: runs nothing
  }
  return true;
}

export function pathPool(dir) {
  return [
    'a',
    'a/b',
    'f.txt',
    'dir',
    'dir/sub/f',
    '',
    '.',
    '..',
    '../..',
    'x/../../..',
    '/',
    '/etc',
    '/etc/passwd',
    '/tmp',
    '/proc/self/environ',
    `${dir}`,
    `${dir}/state`,
    `${dir}/f.txt`,
    `${dir}/../..`,
    '\\\\server\\share',
    'C:\\',
  ];
}

/** A generator of client messages for one batch. */
export function messageGen(r, dir, productType) {
  const paths = pathPool(dir);
  const strings = (field) =>
    ['path', 'source', 'target', 'workingDirectory'].includes(field)
      ? paths
      : field === 'fileName'
        ? SAFE_PROGRAMS
        : field === 'algorithm'
          ? ['sha256', 'sha1', 'md5', 'crc32']
          : undefined;
  const metaNames = ['Ping', 'GetAgentInfo', 'GetAgentRootPath', 'UpdateAgent'];
  const productNames = Object.keys(PRODUCT_COMMANDS).filter((n) => n !== 'Cancel');
  const tokens = [];
  let nextToken = 1 + r.int(1000);
  // One product type per batch, mostly: every type a session uses costs a host process.
  const mixed = r.chance(0.3);
  const type = () => (mixed && r.chance(0.1) ? 1 + r.int(3) : productType);
  const validRequest = (big = false) => {
    if (r.chance(0.25)) {
      const name = r.pick(metaNames);
      return encodeMetaRequest(name, genValue(r, META_COMMANDS[name].request, { strings }));
    }
    const name = big ? 'WriteAllBytes' : r.pick(productNames);
    const args = genValue(r, PRODUCT_COMMANDS[name].request, { strings, maxBytes: 4096 });
    if (big) {
      args.path = 'big.bin';
      args.contents = r.bytes(256 * 1024 + r.int(2 * 1024 * 1024)); // oversized for most: bounded
    }
    const token = nextToken++;
    tokens.push(token);
    return encodeProductRequest(type(), name, token, args);
  };
  return () => {
    const roll = r.int(100);
    if (roll < 45) return validRequest();
    if (roll < 70) {
      const m = validRequest();
      // Mutate the data only half the time (the header then stays plausible).
      return r.chance(0.5) ? mutate(r, m) : Buffer.concat([m.subarray(0, 5), mutate(r, m.subarray(5))]);
    }
    if (roll < 85) {
      const agentType = r.chance(0.7) ? r.int(4) : r.int(256);
      const command = r.chance(0.6) ? r.int(120) : r.pick(EDGE_I32);
      const data = r.bytes(r.int(64));
      if (agentType !== 0 && data.length >= 4) data.writeInt32LE(nextToken++, 0);
      return encodeClientMessage(agentType, command, data);
    }
    if (roll < 95) {
      const m = validRequest(r.chance(0.02));
      if (r.chance(0.5)) return m.subarray(0, 5 + r.int(m.length - 4)); // truncated arguments
      const b = Buffer.from(m);
      if (b.length >= 13)
        b.writeInt32LE(r.pick([0x7fffffff, 0x40000000, MAX_MESSAGE + 1, -1]), 9 + r.int(b.length - 12));
      return b;
    }
    const target = tokens.length > 0 && r.chance(0.7) ? r.pick(tokens) : r.u32() | 0;
    return encodeProductRequest(type(), 'Cancel', nextToken++, { targetToken: target });
  };
}

/** A frame's bytes that are a protocol error at the framing level, for the end of a batch. */
export function fatalBytes(r, mode) {
  const header = (len) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(len, 0);
    return b;
  };
  const len = r.pick([0x7fffffff, MAX_MESSAGE + 1, -1, -0x80000000, 0x40000000 + r.int(1 << 29)]);
  if (mode === 'aes') {
    // Undecryptable: random ciphertext of a valid length, or an impossible length.
    if (r.chance(0.5)) return { bytes: Buffer.concat([header(len), r.bytes(32)]), cut: false };
    const n = 32 + 16 * r.int(8);
    return { bytes: Buffer.concat([header(n), r.bytes(n)]), cut: false };
  }
  if (r.chance(0.5)) return { bytes: Buffer.concat([header(len), Buffer.from([2]), r.bytes(8)]), cut: false };
  // A frame declared longer than what is sent, then the end of the stream.
  const declared = 16 + r.int(1 << 20);
  return {
    bytes: Buffer.concat([
      header(declared),
      Buffer.from([2, 1, 0, 0, 0]),
      r.bytes(r.int(Math.min(declared, 256))),
    ]),
    cut: true,
  };
}

export function describe(m) {
  const msg = decodeClientMessage(m);
  return `${msg.agentType}/${productCommandName(msg.command) ?? msg.command}`;
}
