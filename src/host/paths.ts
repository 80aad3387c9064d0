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
 */
import { lstat, readlink, realpath } from 'node:fs/promises';
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

/**
 * The real location of `p`, existing or not: realpath when it exists; else
 * a dangling symlink is followed through its target (an `O_CREAT` open
 * would create the file there), and a missing component is appended to the
 * real location of its parent.
 */
export async function realLocation(p: string, depth = 0): Promise<string> {
  if (depth > MAX_LINK_DEPTH) throw pathError('IOError', p, 'too many levels of symbolic links');
  try {
    return await realpath(p);
  } catch (err) {
    const code = errorCode(err);
    if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') throw fsError(err, p);
  }
  const parent = path.dirname(p);
  if (parent === p) return p;
  const st = await lstat(p).catch(() => null);
  if (st?.isSymbolicLink()) {
    const target = await readlink(p).catch((err: unknown) => {
      throw fsError(err, p);
    });
    return realLocation(path.resolve(await realLocation(parent, depth + 1), target), depth + 1);
  }
  return path.join(await realLocation(parent, depth), path.basename(p));
}

export interface ResolveOptions {
  /** The operation follows a symlink in the final component (read, write, chmod…). */
  readonly followFinal: boolean;
  /** Which argument, for messages. */
  readonly what?: string;
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
  async resolve(input: unknown, opts: ResolveOptions): Promise<string> {
    const abs = absolutePath(this.ctx, input, opts.what);
    const roots = this.roots;
    if (roots === null) return abs;
    if (!roots.some((r) => isInside(abs, r))) throw this.denied(abs);
    const real = opts.followFinal
      ? await realLocation(abs)
      : path.join(await realLocation(path.dirname(abs)), path.basename(abs));
    for (const r of roots) {
      if (isInside(real, r)) return abs;
      if (isInside(real, await realLocation(r))) return abs;
    }
    throw this.denied(abs);
  }

  private denied(abs: string): Error {
    return pathError('AccessDenied', abs, 'outside the allowed roots');
  }
}
