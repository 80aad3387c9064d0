/**
 * The job API (docs/EXTENSIONS.md): what a job function gets and returns.
 * The same shape for the built-in `outpost.*` jobs (which run on the host's
 * main thread) and for extension jobs (each in its own worker thread).
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { LogLevel } from '../protocol/constants.js';
import type { HostSettings } from '../protocol/index.js';
import { PathResolver } from './paths.js';
import { HostError } from './types.js';

/** The built-in job types (src/host/builtin-jobs.ts), by name. */
export const BUILTIN_JOB_TYPES = ['outpost.manifest', 'outpost.extract', 'outpost.archive'] as const;

/** Default for MaxExtractedSize: the bytes one extraction may write (4 GiB). */
export const DEFAULT_MAX_EXTRACTED = 4 * 1024 * 1024 * 1024;

/** A job's logger: each call is one Log event (4) on the job's token, in order. */
export interface JobLogger {
  debug(text: string): void;
  info(text: string): void;
  warn(text: string): void;
  error(text: string): void;
}

export interface JobContext {
  /** The job type as requested. */
  readonly type: string;
  /** The request's payload bytes. */
  readonly payload: Uint8Array;
  /** Aborted when the client cancels the job; stop within 5 s or the job is stopped by force. */
  readonly signal: AbortSignal;
  /** The session's file-system root (the product's base working directory). */
  readonly root: string;
  readonly log: JobLogger;
  /**
   * Makes `p` absolute (relative paths resolve against `root`) and checks it
   * against the agent's AllowedRoots; throws AccessDenied outside them.
   */
  resolve(p: string): string;
  /** Streams bytes to the client as JobData events (5, an Outpost extension); resolves when there is room for more. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Starts a child process in its own process group. The host tracks it:
   * when the job ends, is canceled or is stopped by force, the whole
   * process group is killed.
   */
  spawn(file: string, args?: readonly string[], options?: SpawnOptions): ChildProcess;
  /** Runs a built-in job type (`outpost.manifest`, `outpost.extract`, `outpost.archive`) and returns its result bytes. */
  run(type: string, payload: Uint8Array | string | object): Promise<Uint8Array>;
  /** Configured limits. */
  readonly limits: { readonly maxExtractedBytes: number };
}

/** A job function: what it returns is the Response's result (bytes as they are, a string as UTF-8, anything else as JSON, nothing as empty). */
export type JobFunction = (job: JobContext) => unknown;

/** The result bytes for what a job function returned. */
export function resultBytes(value: unknown): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** A payload as bytes (the other way round, for `run`). */
export function payloadBytes(value: Uint8Array | string | object): Uint8Array {
  return resultBytes(value);
}

/** The payload of a built-in job: a JSON object. */
export function jsonPayload(payload: Uint8Array, type: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    throw new HostError('InvalidArgument', `${type}: the payload must be a JSON object (UTF-8)`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HostError('InvalidArgument', `${type}: the payload must be a JSON object`);
  return v as Record<string, unknown>;
}

export function stringField(o: Record<string, unknown>, name: string, type: string): string {
  const v = o[name];
  if (typeof v !== 'string' || v === '')
    throw new HostError('InvalidArgument', `${type}: payload field "${name}" must be a non-empty string`);
  return v;
}

export function optionalBool(o: Record<string, unknown>, name: string, type: string, dflt: boolean): boolean {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean')
    throw new HostError('InvalidArgument', `${type}: payload field "${name}" must be true or false`);
  return v;
}

/** A logger whose lines go to `emit` (level, text). */
export function makeLogger(emit: (level: LogLevel, text: string) => void): JobLogger {
  const line = (level: LogLevel) => (text: string) => emit(level, String(text));
  return {
    debug: line(LogLevel.Debug),
    info: line(LogLevel.Info),
    warn: line(LogLevel.Warning),
    error: line(LogLevel.Error),
  };
}

/** The path rule of jobs: the host's one resolver (relative to root; AllowedRoots). */
export function jobResolver(settings: HostSettings): (p: string) => string {
  const resolver = new PathResolver(settings);
  return (p: string) => resolver.resolve(p, { followFinal: true, what: 'job path' });
}
