/**
 * Section "fuzz": generated inputs against every decoder of dist/protocol,
 * in process. An *escape* is any exception that is not a ProtocolError — the
 * decoders' one promise (src/protocol/errors.ts) — and the goal is 0.
 *
 * Inputs, spread evenly over the decoders: mutated valid encodings (from
 * the catalog, see gen.mjs), random bytes, and valid encodings (which must
 * decode: a valid input refused is counted too). Frame decoders get their
 * input in random chunks, so the incremental paths are hit.
 */
import {
  AesFrameDecoder,
  AesFrameEncoder,
  AgentType,
  BinaryReader,
  CONTROL_ROUTE,
  decodeAgentMessage,
  decodeAgentReply,
  decodeClientHello,
  decodeClientMessage,
  decodeControl,
  decodeEventBody,
  decodeMetaArgs,
  decodeMetaError,
  decodeMetaResult,
  decodeOutboundHello,
  decodePipeFrame,
  decodeProductArgs,
  decodeReply,
  decodeResult,
  EVENTS,
  encodeAgentReply,
  encodeClientHello,
  encodeControl,
  encodeError,
  encodeEvent,
  encodeMetaError,
  encodeMetaReply,
  encodeMetaRequest,
  encodeOutboundHello,
  encodePipeFrame,
  encodePlainFrame,
  encodeProductRequest,
  encodeResponse,
  FrameDecoder,
  HostControl,
  isMetaCommand,
  META_COMMANDS,
  PRODUCT_COMMANDS,
  ProtocolError,
  peekReply,
  ReplayCache,
  readValue,
  requestProblem,
} from '../../dist/protocol/index.js';
import { catalogSchemas, encode, genValue, makeRng, mutate } from './gen.mjs';

const KEY = Buffer.alloc(32, 7);
const IV = Buffer.alloc(16, 9);
const MAX = 1024 * 1024;

/** Feeds `input` to a frame decoder in random chunks; returns the messages. */
function pushChunked(r, decoder, input) {
  const out = [];
  let off = 0;
  while (off < input.length) {
    const n = r.chance(0.5) ? input.length - off : 1 + r.int(Math.min(64, input.length - off));
    out.push(...decoder.push(input.subarray(off, off + n)));
    off += n;
  }
  out.push(...decoder.push(Buffer.alloc(0)));
  return out;
}

const metaNames = Object.keys(META_COMMANDS);
const productNames = Object.keys(PRODUCT_COMMANDS);
const eventNames = Object.keys(EVENTS);

/** A valid client message from the catalog (meta or product). */
function clientMessage(r) {
  if (r.chance(0.3)) {
    const name = r.pick(metaNames);
    return encodeMetaRequest(name, genValue(r, META_COMMANDS[name].request));
  }
  const name = r.pick(productNames);
  return encodeProductRequest(1 + r.int(3), name, r.u32() | 0, genValue(r, PRODUCT_COMMANDS[name].request));
}

/** A valid agent message: Response, Error, Event, meta reply, MetaError. */
function agentMessage(r) {
  switch (r.int(5)) {
    case 0: {
      const name = r.pick(productNames);
      return encodeResponse(r.u32() | 0, name, genValue(r, PRODUCT_COMMANDS[name].result));
    }
    case 1:
      return encodeError(r.u32() | 0, 'NotFound', 'no such file', r.chance(0.5) ? null : 'detail');
    case 2: {
      const name = r.pick(eventNames);
      return encodeEvent(r.u32() | 0, name, genValue(r, EVENTS[name].body));
    }
    case 3: {
      const name = r.pick(metaNames);
      return encodeMetaReply(name, genValue(r, META_COMMANDS[name].result));
    }
    default:
      return encodeMetaError(r.int(10), 'unknown meta command');
  }
}

function aesFrames(r, make) {
  const enc = new AesFrameEncoder(KEY, IV);
  const n = 1 + r.int(3);
  return Buffer.concat(Array.from({ length: n }, () => enc.encode(make(r))));
}

/**
 * The decoders: { name, valid(r) → a valid input, decode(r, input) }.
 * Schema decoders (every request, result and event of the catalog) are added below.
 */
const TARGETS = [
  {
    name: 'handshake: client hello',
    valid: (r) => encodeClientHello({ sessionId: r.u32() | 0 }),
    decode: (_r, b) => decodeClientHello(b),
  },
  {
    name: 'handshake: agent reply',
    valid: (r) => {
      const mode = r.int(3);
      return encodeAgentReply(
        mode === 2
          ? { mode, iv: r.bytes(16), sessionId: r.u32() | 0, version: r.u32() | 0 }
          : { mode, sessionId: r.u32() | 0, version: r.u32() | 0 },
      );
    },
    decode: (_r, b) => decodeAgentReply(b),
  },
  {
    name: 'handshake: outbound hello',
    valid: (r) => encodeOutboundHello(r.bytes(r.int(40)).toString('hex')),
    decode: (_r, b) => decodeOutboundHello(b),
  },
  {
    name: 'frames: plain client → agent',
    valid: (r) =>
      Buffer.concat(Array.from({ length: 1 + r.int(3) }, () => encodePlainFrame(clientMessage(r), 5))),
    decode: (r, b) => {
      for (const m of pushChunked(r, new FrameDecoder(MAX, 5), b)) requestProblem(decodeClientMessage(m));
    },
  },
  {
    name: 'frames: plain agent → client',
    valid: (r) =>
      Buffer.concat(Array.from({ length: 1 + r.int(3) }, () => encodePlainFrame(agentMessage(r), 4))),
    decode: (r, b) => {
      for (const m of pushChunked(r, new FrameDecoder(MAX, 4), b)) {
        peekReply(m);
        decodeReply(m);
      }
    },
  },
  {
    name: 'frames: AES client → agent',
    valid: (r) => aesFrames(r, clientMessage),
    decode: (r, b) => {
      const d = new AesFrameDecoder(KEY, IV, { maxSize: MAX, headerSize: 5, replay: new ReplayCache(8) });
      for (const m of pushChunked(r, d, b)) requestProblem(decodeClientMessage(m));
    },
  },
  {
    name: 'frames: AES agent → client',
    valid: (r) => aesFrames(r, agentMessage),
    decode: (r, b) => {
      const d = new AesFrameDecoder(KEY, IV, { maxSize: MAX, headerSize: 4 });
      for (const m of pushChunked(r, d, b)) decodeReply(m);
    },
  },
  {
    name: 'client message + arguments',
    valid: clientMessage,
    decode: (_r, b) => {
      const msg = decodeClientMessage(b);
      if (requestProblem(msg) !== null) return;
      if (msg.agentType === AgentType.Meta) {
        for (const n of metaNames) if (META_COMMANDS[n].code === msg.command) decodeMetaArgs(n, msg.data);
      } else
        for (const n of productNames)
          if (PRODUCT_COMMANDS[n].code === msg.command) decodeProductArgs(n, msg.data);
    },
  },
  {
    name: 'agent message (reply envelope)',
    valid: agentMessage,
    decode: (_r, b) => {
      decodeAgentMessage(b);
      peekReply(b);
      const rep = decodeReply(b);
      if (rep.kind === 'meta-error') decodeMetaError(b.subarray(4));
    },
  },
  {
    name: 'pipe codec',
    valid: (r) => {
      const control = r.pick([
        { control: HostControl.Ping, token: r.u32() | 0 },
        { control: HostControl.Shutdown },
        { control: HostControl.Handles, open: r.u32() | 0 },
        { control: HostControl.Temp, exists: r.chance(0.5), path: `/x/.f.${'0'.repeat(12)}.tmp` },
        {
          control: HostControl.Init,
          settings: {
            agentType: 1,
            rootPath: '/x',
            baseDirectory: '/x',
            allowedRoots: null,
            maxMessageSize: MAX,
            maxOpenFiles: 1,
            maxProcesses: 1,
          },
        },
      ]);
      const route = r.chance(0.5) ? CONTROL_ROUTE : r.int(5);
      const msg =
        route === CONTROL_ROUTE ? encodeControl(control) : route === 0 ? agentMessage(r) : clientMessage(r);
      return Buffer.concat(encodePipeFrame(route, msg));
    },
    decode: (r, b) => {
      for (const body of pushChunked(r, new FrameDecoder(MAX, 0), b)) {
        const { route, message } = decodePipeFrame(body);
        if (route === CONTROL_ROUTE) decodeControl(message);
        else if (route === 0) decodeReply(message);
        else decodeClientMessage(message);
      }
    },
  },
];

for (const s of catalogSchemas(EVENTS)) {
  const decode =
    s.kind === 'meta-args'
      ? (_r, b) => (isMetaCommand(s.name) ? decodeMetaArgs(s.name, b) : null)
      : s.kind === 'product-args'
        ? (_r, b) => decodeProductArgs(s.name, b)
        : s.kind === 'meta-result'
          ? (_r, b) => decodeMetaResult(s.name, b)
          : s.kind === 'result'
            ? (_r, b) => decodeResult(s.name, b)
            : s.kind === 'event'
              ? (_r, b) => decodeEventBody(s.name, b)
              : (_r, b) => readValue(new BinaryReader(b), s.schema);
  const valid =
    s.kind === 'product-args'
      ? (r) => Buffer.concat([r.bytes(4), encode(s.schema, genValue(r, s.schema))])
      : (r) => encode(s.schema, genValue(r, s.schema));
  TARGETS.push({ name: s.label, valid, decode });
}

/** Runs `inputs` generated inputs; returns the rows and the details. */
export async function run(ctx) {
  const inputs = ctx.quick ? 50_000 : 1_000_000;
  const seed = ctx.seed ?? 1;
  const r = makeRng(seed);
  let escapes = 0;
  let validRefused = 0;
  let protocolErrors = 0;
  const samples = [];
  const t0 = performance.now();
  for (let i = 0; i < inputs; i++) {
    const t = TARGETS[i % TARGETS.length];
    const roll = r.int(100);
    let input;
    const isValid = roll < 15;
    try {
      if (isValid) input = t.valid(r);
      else if (roll < 65) input = mutate(r, t.valid(r));
      else input = r.bytes(r.chance(0.9) ? r.int(64) : r.int(4096));
    } catch (err) {
      throw new Error(
        `fuzz: generating a valid "${t.name}" failed (a bug of the generator): ${err?.stack ?? err}`,
      );
    }
    try {
      t.decode(r, input);
    } catch (err) {
      if (err instanceof ProtocolError) {
        protocolErrors++;
        if (isValid) {
          validRefused++;
          if (samples.length < 20)
            samples.push({
              target: t.name,
              kind: 'valid refused',
              error: String(err.message),
              input: input.toString('hex').slice(0, 400),
            });
        }
      } else {
        escapes++;
        if (samples.length < 20)
          samples.push({
            target: t.name,
            kind: 'escape',
            error: String(err?.stack ?? err).slice(0, 600),
            input: input.toString('hex').slice(0, 400),
          });
      }
    }
    if (i % 100_000 === 99_999) ctx.log(`fuzz: ${i + 1} inputs, ${escapes} escapes`);
  }
  const seconds = (performance.now() - t0) / 1000;
  ctx.log(`fuzz: ${inputs} inputs over ${TARGETS.length} decoders in ${seconds.toFixed(1)} s (seed ${seed})`);
  for (const s of samples)
    ctx.log(`fuzz: ${s.kind} in ${s.target}: ${s.error.split('\n')[0]} (input ${s.input.slice(0, 80)}…)`);
  ctx.details.fuzz = { inputs, decoders: TARGETS.map((t) => t.name), seed, seconds, protocolErrors, samples };
  return [
    {
      section: 'fuzz',
      figure: 'generated inputs',
      value: inputs,
      goal: ctx.quick ? '50,000 (quick)' : '1,000,000',
      met: true,
    },
    {
      section: 'fuzz',
      figure: 'decoders covered',
      value: TARGETS.length,
      goal: 'all of dist/protocol',
      met: true,
    },
    { section: 'fuzz', figure: 'escapes (not ProtocolError)', value: escapes, goal: 0, met: escapes === 0 },
    {
      section: 'fuzz',
      figure: 'valid inputs refused',
      value: validRefused,
      goal: 0,
      met: validRefused === 0,
    },
  ];
}
