/**
 * Fan-out (`--hosts FILE`): the hosts file, output lines prefixed with
 * their host, and the summary table.
 *
 * Hosts file: one `HOST[:PORT]` per line; `#` starts a comment; blank lines
 * are ignored. After the address a line may override connection options
 * for that host: `key=HEX`, `thumbprint=HEX`, `mode=none|ssl|aes`.
 *
 *     # web tier
 *     web01
 *     web02:46400   key=0123…cdef
 *     [fd00::5]     mode=ssl thumbprint=AB:CD:…
 */
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { type ConnectionFlags, parseTarget, type Target } from './connection.js';
import { UsageError } from './errors.js';
import { bold, colorize, formatDuration, red, table, useColor } from './format.js';
import { drained } from './io.js';

export interface HostEntry {
  target: Target;
  /** Per-host connection options from the hosts file. */
  flags: Partial<ConnectionFlags>;
  /** Line number in the file (1-based). */
  line: number;
}

const SETTINGS = new Set(['key', 'thumbprint', 'mode']);

/** Parses a hosts file's text; `name` is used in error messages. */
export function parseHosts(text: string, name: string): HostEntry[] {
  const entries: HostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const hash = raw.indexOf('#');
    const line = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (line === '') return;
    const [address = '', ...settings] = line.split(/\s+/);
    let target: Target;
    try {
      target = parseTarget(address);
    } catch (err) {
      throw new UsageError(`${name}:${i + 1}: ${(err as Error).message}`);
    }
    const flags: Partial<ConnectionFlags> = {};
    for (const s of settings) {
      const eq = s.indexOf('=');
      const key = eq < 0 ? s : s.slice(0, eq);
      if (eq < 0 || !SETTINGS.has(key))
        throw new UsageError(
          `${name}:${i + 1}: "${key}" is not a host setting; after HOST[:PORT] write key=HEX, thumbprint=HEX or mode=none|ssl|aes`,
        );
      flags[key as 'key' | 'thumbprint' | 'mode'] = s.slice(eq + 1);
    }
    entries.push({ target, flags, line: i + 1 });
  });
  return entries;
}

/** Reads and parses a hosts file. */
export async function readHostsFile(file: string): Promise<HostEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `--hosts: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass a file with one HOST[:PORT] per line`,
    );
  }
  const entries = parseHosts(text, file);
  if (entries.length === 0)
    throw new UsageError(`--hosts: ${file} lists no hosts; write one HOST[:PORT] per line`);
  return entries;
}

/** Parses --parallel (default: every host at once, at most 64). */
export function parseParallel(text: string | undefined, hosts: number): number {
  if (text === undefined) return Math.max(1, Math.min(hosts, 64));
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 1024)
    throw new UsageError(`--parallel: "${text}" must be a number of hosts from 1 to 1024`);
  return n;
}

/** Longest line kept before it is written out without its end (bounded memory per stream). */
const MAX_LINE = 64 * 1024;

/**
 * Copies `src` to `out` line by line, each line prefixed. A last line
 * without a newline gets one. Honours `out`'s backpressure.
 */
export async function pumpPrefixed(src: Readable, out: NodeJS.WritableStream, prefix: string): Promise<void> {
  let partial: Buffer = Buffer.alloc(0);
  const write = async (text: Buffer) => {
    if (!out.write(Buffer.concat([Buffer.from(prefix), text]))) await drained(out);
  };
  for await (const chunk of src) {
    let data = partial.length > 0 ? Buffer.concat([partial, chunk as Buffer]) : (chunk as Buffer);
    let nl = data.indexOf(10);
    while (nl >= 0) {
      await write(data.subarray(0, nl + 1));
      data = data.subarray(nl + 1);
      nl = data.indexOf(10);
    }
    if (data.length >= MAX_LINE) {
      await write(Buffer.concat([data, Buffer.from('\n')]));
      data = Buffer.alloc(0);
    }
    partial = Buffer.from(data);
  }
  if (partial.length > 0) await write(Buffer.concat([partial, Buffer.from('\n')]));
}

/** Prefixes for each host: `web01:   ` (aligned), colored when the stream is a colored terminal. */
export function hostPrefixes(labels: string[], stream: NodeJS.WriteStream): string[] {
  const width = Math.max(...labels.map((l) => l.length)) + 1;
  const color = useColor(stream);
  return labels.map((l, i) => {
    const text = `${l}:`.padEnd(width);
    return `${color ? colorize(text, i) : text} `;
  });
}

/** One host's outcome, for the summary. */
export interface HostResult {
  label: string;
  ok: boolean;
  /** `exit 0`, `exit 3`, `killed by SIGKILL`, `12 files, 3.4 MiB`, or the error (first clause). */
  result: string;
  ms: number;
}

/** Prints the summary table and a last line saying how many hosts failed. */
export function printSummary(results: HostResult[], stream: NodeJS.WriteStream = process.stderr): void {
  const color = useColor(stream);
  const rows = [['HOST', 'RESULT', 'TIME'], ...results.map((r) => [r.label, r.result, formatDuration(r.ms)])];
  const lines = table(rows).split('\n');
  const body = lines.map((l, i) => (i === 0 ? bold(l, color) : results[i - 1]!.ok ? l : red(l, color)));
  const failed = results.filter((r) => !r.ok).length;
  const last =
    failed === 0
      ? `all ${results.length} hosts succeeded`
      : `${failed} of ${results.length} host${results.length === 1 ? '' : 's'} failed`;
  stream.write(`\n${body.join('\n')}\n${failed ? red(last, color) : last}\n`);
}

/** The first clause of an error message: what happened, without the advice. */
export function shortReason(message: string): string {
  const i = message.indexOf('; ');
  return i < 0 ? message : message.slice(0, i);
}
