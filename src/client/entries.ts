/**
 * Remote directory entries as the SDK returns them: the contract's
 * `FileEntry` (PROTOCOL.md §5.2) with its time as a `Date`, and the helpers
 * that derive what the wire no longer carries (an entry's name, its type).
 */
import { type FileEntry, ticksToDate } from '../protocol/index.js';

/** POSIX `st_mode` type bits (the wire's `mode` carries them; 0 where the agent has none). */
export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;

/** A remote file, directory or other entry (symbolic links are reported as themselves). */
export interface RemoteEntry {
  /** The entry's full path on the agent, in the agent's spelling. */
  fullPath: string;
  /** True for a directory (false for a symbolic link, even to a directory). */
  isDirectory: boolean;
  /** Size in bytes (0 for directories on most systems). */
  size: number;
  /** Last-write time (millisecond precision). */
  lastWriteUtc: Date;
  /** Last-write time in .NET ticks (100 ns), exactly as the agent reported it. */
  lastWriteTicks: bigint;
  /** POSIX `st_mode`: type bits (`mode & S_IFMT`) and permission bits (`mode & 0o7777`); 0 where none. */
  mode: number;
}

/** What {@link entryType} reports. */
export type EntryType = 'file' | 'directory' | 'symlink' | 'other';

/** @internal The wire entry as the SDK returns it. */
export function toEntry(e: FileEntry): RemoteEntry {
  return {
    fullPath: e.fullPath,
    isDirectory: e.isDirectory,
    size: e.size,
    lastWriteUtc: ticksToDate(e.lastWriteUtc),
    lastWriteTicks: e.lastWriteUtc,
    mode: e.mode,
  };
}

/**
 * The entry's type from `isDirectory` and the type bits of `mode`. An agent
 * that reports no type bits (mode 0) has its non-directories taken as files.
 */
export function entryType(e: Pick<RemoteEntry, 'isDirectory' | 'mode'>): EntryType {
  const type = e.mode & S_IFMT;
  if (type === S_IFLNK) return 'symlink';
  if (e.isDirectory || type === S_IFDIR) return 'directory';
  return type === S_IFREG || type === 0 ? 'file' : 'other';
}

/** True when the path is spelled the Windows way (`C:\…` or `\\server\…`). */
function windowsPath(p: string): boolean {
  return /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
}

/** The last segment of the entry's full path (its name). */
export function entryName(e: Pick<RemoteEntry, 'fullPath'>): string {
  const p = e.fullPath;
  const cut = windowsPath(p) ? Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\')) : p.lastIndexOf('/');
  return p.slice(cut + 1);
}

/**
 * `fullPath` relative to `rootFullPath`, `/`-separated, or null when it is
 * not below it. Used to name the entries of a listing after its root.
 */
export function relativeName(rootFullPath: string, fullPath: string): string | null {
  const win = windowsPath(rootFullPath);
  const norm = (p: string) => (win ? p.replaceAll('\\', '/') : p);
  let root = norm(rootFullPath);
  const full = norm(fullPath);
  while (root.length > 1 && root.endsWith('/')) root = root.slice(0, -1);
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const same = win ? full.toLowerCase().startsWith(prefix.toLowerCase()) : full.startsWith(prefix);
  if (!same || full.length === prefix.length) return null;
  return full.slice(prefix.length);
}
