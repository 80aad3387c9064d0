/**
 * Logging: pino, JSON lines to stdout (readable lines through pino-pretty
 * when stdout is a terminal) and, when LogFile is set, JSON lines to that
 * file too, rotated by size (`RotatingFile`). Secrets are never passed to the logger; as a second line of defence
 * fields named like secrets are redacted, and config secrets are `Secret`
 * objects that serialise as "[redacted]".
 *
 * Floods (handshake failures, protocol errors from a scanner) go through
 * `RateLimitedLog`: at most `perSecond` lines per kind per second, then one
 * line saying how many were suppressed.
 */
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  logFile?: string | null;
  /** LogFile is rotated when it reaches this many bytes (default 10 MiB). */
  logFileMaxSize?: number;
  /** Rotated files kept: LogFile.1 … LogFile.N (default 5). */
  logFileCount?: number;
  level?: LevelWithSilent;
  /** Where stdout lines go (default: the process's stdout). */
  stdout?: DestinationStream;
  /** Readable lines instead of JSON on stdout (default: when stdout is a TTY and NO_COLOR/OUTPOST_LOG_JSON are unset). */
  pretty?: boolean;
}

/**
 * LogFile, rotated by size the way logrotate names files: the live file
 * keeps its name; at `maxSize` it becomes `<file>.1` (`.1` → `.2` …, the
 * oldest beyond `count` removed) and a new file is started. Writes are
 * synchronous appends (the logger was synchronous before): a line is in the
 * file when the call returns, and nothing queues in memory. Not pino-roll:
 * it numbers the live file itself (`agent.1.log`), so LogFile would name no
 * file, and it needs an asynchronous start.
 */
export class RotatingFile {
  private fd: number;
  private size: number;

  constructor(
    readonly file: string,
    readonly maxSize = 10 * 1024 * 1024,
    readonly count = 5,
  ) {
    mkdirSync(dirname(file), { recursive: true });
    this.fd = openSync(file, 'a', 0o640);
    this.size = fstatSync(this.fd).size;
  }

  write(line: string): boolean {
    const bytes = Buffer.byteLength(line);
    if (this.size > 0 && this.size + bytes > this.maxSize) this.rotate();
    try {
      writeSync(this.fd, line);
      this.size += bytes;
    } catch {
      // a full disk must not take the agent down
    }
    return true;
  }

  private rotate(): void {
    try {
      closeSync(this.fd);
      rmSync(`${this.file}.${this.count}`, { force: true });
      for (let i = this.count - 1; i >= 1; i--) {
        try {
          renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
        } catch {
          // not there yet
        }
      }
      renameSync(this.file, `${this.file}.1`);
    } catch {
      // could not rotate: keep appending to the same file
    }
    this.fd = openSync(this.file, 'a', 0o640);
    this.size = fstatSync(this.fd).size;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** pino-pretty, loaded only when used (every CLI command imports this module). */
function prettyStream(): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  return pretty({ sync: true, colorize: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' });
}

/** True when stdout lines should be pino-pretty's readable ones. */
export function prettyByDefault(): boolean {
  return process.stdout.isTTY === true && !process.env.NO_COLOR && !process.env.OUTPOST_LOG_JSON;
}

const REDACT = ['key', 'aesKey', 'privateKey', 'password', '*.key', '*.aesKey', '*.privateKey', '*.password'];

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const pretty = options.pretty ?? (options.stdout === undefined && prettyByDefault());
  const stdout = options.stdout ?? (pretty ? prettyStream() : pino.destination({ dest: 1, sync: true }));
  // 'trace': the multistream passes everything; the logger's own level (changed by a reload) filters.
  const streams: { stream: DestinationStream; level: LevelWithSilent }[] = [
    { stream: stdout, level: 'trace' },
  ];
  if (options.logFile) {
    streams.push({
      stream: new RotatingFile(options.logFile, options.logFileMaxSize, options.logFileCount),
      level: 'trace',
    });
  }
  return pino(
    { level, base: { pid: process.pid }, redact: { paths: REDACT, censor: '[redacted]' } },
    pino.multistream(streams as Parameters<typeof pino.multistream>[0]),
  );
}

/** A logger that drops nothing the caller needs and writes nothing (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

interface Window {
  start: number;
  count: number;
  suppressed: number;
}

export class RateLimitedLog {
  private readonly windows = new Map<string, Window>();
  constructor(
    private readonly logger: Logger,
    private readonly perSecond = 10,
  ) {}

  /** Logs at warn level unless `kind` has already logged `perSecond` lines in the current second. */
  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    this.log('warn', kind, fields, message);
  }

  info(kind: string, fields: Record<string, unknown>, message: string): void {
    this.log('info', kind, fields, message);
  }

  private log(level: 'warn' | 'info', kind: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    let w = this.windows.get(kind);
    if (!w || now - w.start >= 1000) {
      const suppressed = w?.suppressed ?? 0;
      w = { start: now, count: 0, suppressed: 0 };
      this.windows.set(kind, w);
      if (suppressed > 0)
        this.logger[level]({ kind, suppressed }, `${suppressed} more "${kind}" messages were suppressed`);
    }
    if (w.count < this.perSecond) {
      w.count++;
      this.logger[level]({ kind, ...fields }, message);
    } else {
      w.suppressed++;
    }
    if (this.windows.size > 1000) this.windows.clear(); // kinds are a fixed set; this is only a guard
  }
}
