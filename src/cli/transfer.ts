/** Helpers shared by `put` and `get`: local totals, remote path joins, skipped-entry notes. */
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { type TransferProgress, walkLocal } from '../client/index.js';
import { UsageError } from './errors.js';

/** Files and bytes under a local path as the SDK will send them (its own walk: symlinks and special files are skipped). */
export async function localTotals(path: string): Promise<{ files: number; bytes: number; isDir: boolean }> {
  const st = await stat(path);
  if (st.isFile()) return { files: 1, bytes: st.size, isDir: false };
  const tree = await walkLocal(path);
  return { files: tree.files.length, bytes: tree.files.reduce((n, f) => n + f.size, 0), isDir: true };
}

/** Checks a local source exists and is a file or directory; says what to fix otherwise. */
export async function checkLocalSource(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT'
        ? `${path}: no such local file or directory; check the path`
        : `${path}: cannot read it (${code ?? String(err)}); check the path and its permissions`,
    );
  }
  if (!st.isFile() && !st.isDirectory())
    throw new UsageError(`${path} is neither a file nor a directory; only files and directories can be sent`);
}

/** The last component of a local path (`./dist/` → `dist`, `.` → the current directory's name). */
export function localBasename(path: string): string {
  return basename(resolve(path));
}

/** The last component of a remote path, for either separator. */
export function remoteBasename(path: string): string {
  return (
    path
      .split(/[\\/]+/)
      .filter(Boolean)
      .pop() ?? ''
  );
}

/** True when a remote or local path ends with a separator (`/srv/app/`): "into this directory". */
export function endsWithSeparator(path: string): boolean {
  return /[\\/]$/.test(path);
}

/** `dir` + separator + `name`, without doubling separators. */
export function remoteJoin(dir: string, name: string, sep: string): string {
  const trimmed = dir.replace(/[\\/]+$/, '');
  return `${trimmed}${sep}${name}`;
}

/** Progress over several transfers: adds what the earlier ones moved. */
export class ProgressTotals {
  private bytesBefore = 0;
  private filesBefore = 0;
  constructor(
    private totalBytes: number,
    private totalFiles: number,
  ) {}

  map(p: TransferProgress): TransferProgress {
    const bytes = this.bytesBefore + p.bytes;
    const files = this.filesBefore + p.files;
    this.totalBytes = Math.max(this.totalBytes, this.bytesBefore + p.totalBytes, bytes);
    this.totalFiles = Math.max(this.totalFiles, this.filesBefore + p.totalFiles, files);
    return { file: p.file, bytes, totalBytes: this.totalBytes, files, totalFiles: this.totalFiles };
  }

  add(result: { files: number; bytes: number }): void {
    this.bytesBefore += result.bytes;
    this.filesBefore += result.files;
  }

  get done(): { files: number; bytes: number } {
    return { files: this.filesBefore, bytes: this.bytesBefore };
  }
}

/** A note on stderr about entries not transferred. */
export function skippedNote(label: string, skipped: string[], where: string): string | null {
  if (skipped.length === 0) return null;
  const list =
    skipped.slice(0, 5).join(', ') + (skipped.length > 5 ? `, … (${skipped.length - 5} more)` : '');
  return `${label}: skipped ${skipped.length} symbolic link(s) or special file(s) in ${where}: ${list}\n`;
}
