/**
 * Logging: pino, JSON lines to stdout and, when LogFile is set, to that file
 * too. Secrets are never passed to the logger; as a second line of defence
 * fields named like secrets are redacted, and config secrets are `Secret`
 * objects that serialise as "[redacted]".
 *
 * Floods (handshake failures, protocol errors from a scanner) go through
 * `RateLimitedLog`: at most `perSecond` lines per kind per second, then one
 * line saying how many were suppressed.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  logFile?: string | null;
  level?: LevelWithSilent;
  /** Where stdout lines go (default: the process's stdout). */
  stdout?: DestinationStream;
}

const REDACT = ['key', 'aesKey', 'privateKey', 'password', '*.key', '*.aesKey', '*.privateKey', '*.password'];

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const streams: { stream: DestinationStream; level: LevelWithSilent }[] = [
    { stream: options.stdout ?? pino.destination({ dest: 1, sync: true }), level },
  ];
  if (options.logFile) {
    mkdirSync(dirname(options.logFile), { recursive: true });
    streams.push({ stream: pino.destination({ dest: options.logFile, sync: true, append: true }), level });
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
