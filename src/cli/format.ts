/** Small text helpers for the CLI: sizes, durations, colors, tables, permission strings. */

/** `1.5 MiB`, `512 B`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${Math.max(0, Math.round(n))} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** `0.42 s`, `12.3 s`, `2m05s`, `1h02m`. */
/** An integer with thousands separators (10,000), without loading ICU's locale data (~27 ms at first use). */
export function formatCount(n: number): string {
  return String(Math.trunc(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Whether to color output written to `stream`: a TTY and NO_COLOR unset (https://no-color.org). */
export function useColor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true;
}

const PALETTE = [36, 33, 35, 32, 34, 96, 93, 95, 92, 94];

/** Wraps `text` in the i-th of a few distinct ANSI colors. */
export function colorize(text: string, index: number): string {
  return `\x1b[${PALETTE[index % PALETTE.length]}m${text}\x1b[0m`;
}

export function red(text: string, on: boolean): string {
  return on ? `\x1b[31m${text}\x1b[0m` : text;
}

export function bold(text: string, on: boolean): string {
  return on ? `\x1b[1m${text}\x1b[0m` : text;
}

/** Renders rows as left-aligned columns separated by two spaces. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `drwxr-xr-x` from a kind and POSIX permission bits. */
export function modeString(kind: string, mode: number): string {
  const type = kind === 'directory' ? 'd' : kind === 'symlink' ? 'l' : kind === 'file' ? '-' : '?';
  const bits = 'rwxrwxrwx';
  let s = '';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  return type + s;
}

/** `2024-05-01 13:45` (local time). */
export function formatTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
