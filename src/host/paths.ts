/**
 * Path resolution and `allowedRoots` enforcement for the file service.
 *
 * Paths follow the rules of the platform the agent runs on (node:path):
 * relative paths resolve against `ctx.baseDirectory`, `.` and `..` are
 * collapsed lexically (as .NET's Path.GetFullPath does), and the result is
 * absolute. When `ctx.allowedRoots` is set, a path is accepted only if
 *   1. the lexical path lies inside one of the roots, and
 *   2. its real location does too: the real path of the nearest existing
 *      ancestor (of the path itself when the operation follows the final
 *      symlink, else of its parent) with the rest appended, compared with
 *      the real paths of the roots. This defeats `root/link -> /etc` escapes.
 * The check runs before the operation, so a symlink swapped in between is
 * not caught (TOCTOU); allowed roots guard the file commands, they are not
 * a sandbox (StartProcess can do anything the agent's user can).
 *
 * Every request resolves afresh, nothing is cached: a cache of real
 * locations could be fooled by a directory swapped for a symlink after it
 * was cached. The calls are synchronous instead (`lstat` of the final
 * component, `realpath` of its directory): on a local file system each is a
 * few microseconds, less than one promise round trip through libuv's thread
 * pool, and the host is one process per session, so nothing else waits.
 */
import { type BigIntStats, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { errorCode, fsError, pathError } from './fs-errors.js';
import type { HostContext } from './types.js';

/** Whether `p` is `root` or lies below it (both absolute, same platform). */
export function isInside(p: string, root: string): boolean {
  const rel = path.relative(root, p);
  if (rel === '') return true;
  if (path.isAbsolute(rel)) return false;
  return rel !== '..' && !rel.startsWith(`..${path.sep}`);
}

/**
 * {@link isInside} for paths already normalised (path.resolve, realpath):
 * a string comparison on POSIX, where names are case-sensitive.
 */
function insideNormalized(p: string, root: string): boolean {
  if (path.sep !== '/') return isInside(p, root);
  if (!p.startsWith(root)) return false;
  return p.length === root.length || root.endsWith('/') || p.charCodeAt(root.length) === 0x2f;
}

/** Whether `p` is a file-system root (`/`, `C:\`, `\\server\share\`). */
export function isFilesystemRoot(p: string): boolean {
  return path.parse(p).root === p || path.dirname(p) === p;
}

/** Validates and makes absolute; no file-system access. */
export function absolutePath(ctx: HostContext, input: unknown, what = 'path'): string {
  if (typeof input !== 'string')
    throw pathError('InvalidArgument', String(input), `${what} must be a string`);
  if (input.length === 0) throw pathError('InvalidArgument', '(empty)', `${what} is empty`);
  if (input.includes('\0')) {
    throw pathError('InvalidArgument', JSON.stringify(input), `${what} contains a NUL character`);
  }
  return path.resolve(ctx.baseDirectory, input);
}

/** Symlinks followed before giving up, as the kernel's ELOOP limit. */
const MAX_LINK_DEPTH = 40;

const LSTAT_OPTIONS = { bigint: true, throwIfNoEntry: false } as const;

/**
 * `lstat` of `p`, or null when it does not exist or cannot be examined
 * (ENOENT, ENOTDIR, EACCES…): callers that must report why redo the call.
 */
export function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstatSync(p, LSTAT_OPTIONS) ?? null;
  } catch {
    return null;
  }
}

/**
 * The real location of `p`, existing or not: realpath when it exists; else
 * a dangling symlink is followed through its target (an `O_CREAT` open
 * would create the file there), and a missing component is appended to the
 * real location of its parent. Synchronous (see the module comment).
 */
export function realLocationSync(p: string, depth = 0): string {
  if (depth > MAX_LINK_DEPTH) throw pathError('IOError', p, 'too many levels of symbolic links');
  try {
    return realpathSync.native(p);
  } catch (err) {
    const code = errorCode(err);
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') throw fsError(err, p);
  }
  const parent = path.dirname(p);
  if (parent === p) return p;
  if (lstatOrNull(p)?.isSymbolicLink()) {
    let target: string;
    try {
      target = readlinkSync(p);
    } catch (err) {
      throw fsError(err, p);
    }
    return realLocationSync(path.resolve(realLocationSync(parent, depth + 1), target), depth + 1);
  }
  return path.join(realLocationSync(parent, depth), path.basename(p));
}

/** {@link realLocationSync} as a promise (kept for callers that want one). */
export async function realLocation(p: string): Promise<string> {
  return realLocationSync(p);
}

export interface ResolveOptions {
  /** The operation follows a symlink in the final component (read, write, chmod…). */
  readonly followFinal: boolean;
  /** Which argument, for messages. */
  readonly what?: string;
}

/** A resolved path and what `lstat` said about it then (null: missing or unreadable). */
export interface Resolved {
  readonly path: string;
  readonly st: BigIntStats | null;
}

export class PathResolver {
  private readonly roots: readonly string[] | null;

  constructor(private readonly ctx: HostContext) {
    this.roots = ctx.allowedRoots ? ctx.allowedRoots.map((r) => path.resolve(ctx.baseDirectory, r)) : null;
  }

  /** Whether paths are restricted at all. */
  get restricted(): boolean {
    return this.roots !== null;
  }

  /** Validates, makes absolute and enforces `allowedRoots`; returns the absolute path. */
  resolve(input: unknown, opts: ResolveOptions): string {
    const abs = absolutePath(this.ctx, input, opts.what);
    if (this.roots === null) return abs;
    this.checkLexical(abs);
    this.checkReal(abs, opts.followFinal && lstatOrNull(abs)?.isSymbolicLink() === true);
    return abs;
  }

  /**
   * {@link resolve}, plus the path's `lstat` (taken once, for the check and
   * for the caller: the handlers of small requests need no second call).
   */
  lookup(input: unknown, opts: ResolveOptions): Resolved {
    const abs = absolutePath(this.ctx, input, opts.what);
    if (this.roots !== null) this.checkLexical(abs);
    const st = lstatOrNull(abs);
    if (this.roots !== null) this.checkReal(abs, opts.followFinal && st?.isSymbolicLink() === true);
    return { path: abs, st };
  }

  private checkLexical(abs: string): void {
    if (!this.roots!.some((r) => insideNormalized(abs, r))) throw this.denied(abs);
  }

  /** `throughFinal`: the final component is a symlink the operation follows. */
  private checkReal(abs: string, throughFinal: boolean): void {
    const real = throughFinal
      ? realLocationSync(abs)
      : path.join(realLocationSync(path.dirname(abs)), path.basename(abs));
    for (const r of this.roots!) {
      if (insideNormalized(real, r)) return;
      if (insideNormalized(real, realLocationSync(r))) return;
    }
    throw this.denied(abs);
  }

  private denied(abs: string): Error {
    return pathError('AccessDenied', abs, 'outside the allowed roots');
  }
}
