/**
 * Transfer progress on stderr:
 *
 * - on a TTY, one bar redrawn in place at most 10 times a second:
 *     put  42% [########············]  12.3 MiB/29.1 MiB  8.4 MiB/s  ETA 2.01 s  3/10 files
 * - otherwise plain lines: when a file completes (at most one a second, and
 *   at least one every 5 s), and a last one when done:
 *     put: 42% 12.3 MiB of 29.1 MiB, 3 of 10 files, 8.4 MiB/s
 * - nothing with -q.
 *
 * The final summary (`put: 10 files, 29.1 MiB in 3.4 s (8.4 MiB/s)`) is
 * printed in both modes unless -q.
 */
import type { TransferProgress } from '../client/index.js';
import { formatBytes, formatDuration } from './format.js';

export interface ProgressReporter {
  update(p: TransferProgress): void;
  /** Clears the bar and prints the summary line. */
  done(summary?: { files: number; bytes: number }): void;
  /** Clears the bar (before an error is printed). */
  clear(): void;
}

const BAR_INTERVAL_MS = 100;
const LINE_INTERVAL_MS = 1000;

export function createProgress(options: {
  label: string;
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
  now?: () => number;
}): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  if (options.quiet) return { update() {}, done() {}, clear() {} };
  const tty = stream.isTTY === true;
  const t0 = now();
  let last: TransferProgress | null = null;
  let lastDraw = tty ? -Infinity : t0;
  let lastFiles = 0;
  let drawn = false;

  const rate = (bytes: number) => {
    const s = (now() - t0) / 1000;
    return s > 0 ? bytes / s : 0;
  };
  const percent = (p: TransferProgress) =>
    p.totalBytes > 0
      ? Math.min(100, Math.floor((p.bytes / p.totalBytes) * 100))
      : p.files >= p.totalFiles
        ? 100
        : 0;

  const drawBar = (p: TransferProgress) => {
    const r = rate(p.bytes);
    const eta = r > 0 && p.totalBytes > p.bytes ? ((p.totalBytes - p.bytes) / r) * 1000 : 0;
    const pct = percent(p);
    const info =
      `${String(pct).padStart(3)}%` +
      ` ${formatBytes(p.bytes)}/${formatBytes(p.totalBytes)}` +
      `  ${formatBytes(r)}/s  ETA ${formatDuration(eta)}` +
      (p.totalFiles > 1 ? `  ${p.files}/${p.totalFiles} files` : '');
    const columns = stream.columns || 80;
    const width = Math.max(10, Math.min(30, columns - info.length - options.label.length - 6));
    const fill = Math.round((pct / 100) * width);
    const line = `${options.label} [${'#'.repeat(fill)}${'·'.repeat(width - fill)}] ${info}`;
    stream.write(`\r\x1b[K${line.slice(0, columns - 1)}`);
    drawn = true;
  };
  const plainLine = (p: TransferProgress) => {
    stream.write(
      `${options.label}: ${percent(p)}% ${formatBytes(p.bytes)} of ${formatBytes(p.totalBytes)}, ` +
        `${p.files} of ${p.totalFiles} file${p.totalFiles === 1 ? '' : 's'}, ${formatBytes(rate(p.bytes))}/s\n`,
    );
  };
  const clear = () => {
    if (drawn) stream.write('\r\x1b[K');
    drawn = false;
  };

  return {
    update(p) {
      last = p;
      const t = now();
      if (tty) {
        if (t - lastDraw >= BAR_INTERVAL_MS || p.bytes === p.totalBytes) {
          lastDraw = t;
          drawBar(p);
        }
      } else if (
        p.files < p.totalFiles &&
        t - lastDraw >= LINE_INTERVAL_MS &&
        (p.files > lastFiles || t - lastDraw >= 5 * LINE_INTERVAL_MS)
      ) {
        lastFiles = p.files;
        lastDraw = t;
        plainLine(p);
      }
    },
    done(summary) {
      clear();
      if (!tty && last && last.totalFiles > 0) plainLine(last);
      const files = summary?.files ?? last?.files ?? 0;
      const bytes = summary?.bytes ?? last?.bytes ?? 0;
      const ms = now() - t0;
      stream.write(
        `${options.label}: ${files} file${files === 1 ? '' : 's'}, ${formatBytes(bytes)} in ${formatDuration(ms)}` +
          ` (${formatBytes(ms > 0 ? (bytes / ms) * 1000 : 0)}/s)\n`,
      );
    },
    clear,
  };
}
