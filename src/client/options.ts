/**
 * Validation of the SDK's options and arguments (internal): each turns what
 * a caller passed into what the wire needs, or throws a TypeError /
 * RangeError that says what is expected, before anything is sent.
 */
import { Buffer } from 'node:buffer';
import {
  AGENT_TYPE_NAMES,
  AgentType,
  DEFAULT_MAX_MESSAGE_SIZE,
  isProductType,
  MAX_MAX_MESSAGE_SIZE,
  MIN_MAX_MESSAGE_SIZE,
  type ProductType,
  parseAesKeyHex,
} from '../protocol/index.js';
import type { ReconnectPolicy } from './channel.js';

/** A product agent type by name or number: requests are served by that product's host. */
export type AgentTypeInput = 'BuildMaster' | 'Otter' | 'Hedgehog' | ProductType;

/** `reconnect: true`: 5 retries 500 ms apart. */
export const DEFAULT_RECONNECT: ReconnectPolicy = { retries: 5, delayMs: 500 };

export function productType(input: AgentTypeInput | undefined): ProductType {
  if (input === undefined) return AgentType.BuildMaster;
  if (typeof input === 'number' && isProductType(input)) return input;
  if (typeof input === 'string') {
    for (const [code, name] of Object.entries(AGENT_TYPE_NAMES))
      if (name.toLowerCase() === input.toLowerCase() && isProductType(Number(code)))
        return Number(code) as ProductType;
  }
  throw new TypeError(
    `agentType must be 'Otter' (1), 'BuildMaster' (2) or 'Hedgehog' (3), got ${JSON.stringify(input)}`,
  );
}

export function toKey(key: string | Uint8Array | undefined): Buffer | undefined {
  if (key === undefined) return undefined;
  if (typeof key === 'string') {
    const k = parseAesKeyHex(key);
    if (!k)
      throw new TypeError(
        "key must be the agent's AES key as 32, 48 or 64 hex digits (AES-128/192/256), or a Buffer of 16, 24 or 32 bytes",
      );
    return k;
  }
  if (!(key instanceof Uint8Array) || ![16, 24, 32].includes(key.length))
    throw new TypeError('key must be a Buffer of 16, 24 or 32 bytes, or 32, 48 or 64 hex digits');
  return Buffer.from(key);
}

export function reconnectPolicy(
  r: boolean | { retries?: number; delayMs?: number } | undefined,
): ReconnectPolicy | null {
  if (r === undefined || r === false) return null;
  if (r === true) return DEFAULT_RECONNECT;
  const retries = r.retries ?? DEFAULT_RECONNECT.retries;
  const delayMs = r.delayMs ?? DEFAULT_RECONNECT.delayMs;
  if (!Number.isInteger(retries) || retries < 0)
    throw new RangeError(`reconnect.retries must be an integer ≥ 0, got ${retries}`);
  if (!Number.isFinite(delayMs) || delayMs < 0)
    throw new RangeError(`reconnect.delayMs must be ≥ 0, got ${delayMs}`);
  return { retries, delayMs };
}

export function globs(v: string | string[] | undefined, what: string): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((g) => typeof g !== 'string'))
    throw new TypeError(`${what} must be a glob string or an array of them`);
  return list;
}

export function toBytes(data: string | Uint8Array, encoding: BufferEncoding = 'utf8'): Buffer {
  if (typeof data === 'string') return Buffer.from(data, encoding);
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`data must be a string, Buffer or Uint8Array, got ${typeof data}`);
}

export function checkMode(mode: unknown): number {
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777)
    throw new RangeError(
      `mode must be POSIX permission bits between 0 and 0o7777 (e.g. 0o644), got ${String(mode)}`,
    );
  return mode;
}

export function checkMessageLimit(v: number | undefined): number {
  const n = v ?? DEFAULT_MAX_MESSAGE_SIZE;
  if (!Number.isInteger(n) || n < MIN_MAX_MESSAGE_SIZE || n > MAX_MAX_MESSAGE_SIZE)
    throw new RangeError(
      `agentMaxMessageSize must be between ${MIN_MAX_MESSAGE_SIZE} and ${MAX_MAX_MESSAGE_SIZE} bytes, got ${String(v)}`,
    );
  return n;
}

/** A file name UpdateAgent accepts: no separator, no `..`, not absolute. */
export function checkUpdateName(name: unknown, what: string): string {
  if (
    typeof name !== 'string' ||
    name === '' ||
    /[/\\\0]/.test(name) ||
    name === '.' ||
    name === '..' ||
    /^[A-Za-z]:/.test(name)
  )
    throw new TypeError(
      `${what} must be a plain file name (no directory part, no ".."), got ${JSON.stringify(name)}`,
    );
  return name;
}

export function checkDate(d: unknown, what: string): Date {
  if (!(d instanceof Date) || !Number.isFinite(d.getTime()))
    throw new TypeError(`${what} must be a valid Date`);
  return d;
}
