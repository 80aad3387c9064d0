/**
 * The host's one path resolver: validation, resolution against the base
 * directory, `allowedRoots` enforcement and the preserve-root guards, for
 * file commands and process working directories alike (PROTOCOL.md §5.2).
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
 * Guards (always, with or without allowed roots): deleting, clearing or
 * moving a file-system root or an `allowedRoots` entry itself — or
 * replacing one as a Move/CopyFile target — is `AccessDenied`, like
 * `rm --preserve-root`. The check is made twice: on the lexical path first
 * (so `/`, `root/..`, `root/` are refused before anything else is looked
 * at), then on the real location with every symlink followed (so a link to
 * a root is refused too).
 *
 * Every request resolves afresh, nothing is cached: a cache of real
 * locations could be fooled by a directory swapped for a symlink after it
 * was cached. The calls are synchronous instead (`lstat` of the final
 * component, `realpath` of its directory): on a local file system each is a
 * few microseconds, less than one promise round trip through libuv's thread
 * pool, and the host is one process per session, so nothing else waits.
 */
import {
  accessSync,
  type BigIntStats,
  constants as fsc,
  lstatSync,
  mkdirSync,
  readlinkSync,
  realpathSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import { errorCode, fsError, pathError } from './fs-errors.js';
import type { HostContext, HostError } from './types.js';

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
    // Named by its type: String() of a generated object can itself throw (a non-callable toString).
    throw pathError(
      'InvalidArgument',
      `(${input === null ? 'null' : typeof input})`,
      `${what} must be a string`,
    );
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

/**
 * What a path argument is for, when the operation would destroy or replace
 * what is there: such paths get the preserve-root guards.
 */
export type Destructive = 'delete' | 'clear' | 'move' | 'replace';

export interface ResolveOptions {
  /** The operation follows a symlink in the final component (read, write, chmod…). */
  readonly followFinal: boolean;
  /** Which argument, for messages. */
  readonly what?: string;
  /** The operation destroys or replaces the entry: apply the preserve-root guards. */
  readonly guard?: Destructive;
}

/** A resolved path and what `lstat` said about it then (null: missing or unreadable). */
export interface Resolved {
  readonly path: string;
  readonly st: BigIntStats | null;
}

/** Owner read, write and search: what every session needs of a root (SetMode guard). */
const OWNER_RWX = 0o700;

export class PathResolver {
  private roots: readonly string[] | null = null;
  /** Why the base directory cannot be used (see {@link checkRoot}); null: it can. */
  private rootProblem: HostError | null = null;

  constructor(private readonly ctx: HostContext) {
    this.reloadRoots();
  }

  /** Reads `ctx.allowedRoots` again (a config reload changed them). */
  reloadRoots(): void {
    const ctx = this.ctx;
    this.roots = ctx.allowedRoots ? ctx.allowedRoots.map((r) => path.resolve(ctx.baseDirectory, r)) : null;
  }

  /**
   * Creates the product's root path when it is missing and checks that the
   * base directory can be used (read, write, search); remembers why not.
   * A host whose root cannot be used still serves: a relative path or the
   * default working directory is then refused with that reason (the errno's
   * kind, naming the root), absolute paths are served as usual, and every
   * such request checks again, so a repaired root works at once.
   */
  checkRoot(): HostError | null {
    try {
      mkdirSync(this.ctx.rootPath, { recursive: true });
      accessSync(this.ctx.baseDirectory, fsc.R_OK | fsc.W_OK | fsc.X_OK);
      this.rootProblem = null;
    } catch (err) {
      const e = fsError(err, this.ctx.baseDirectory);
      this.rootProblem = pathError(
        e.kind,
        this.ctx.baseDirectory,
        `the product's root path cannot be used (${e.message.slice(e.message.lastIndexOf(': ') + 2)}): ` +
          'relative paths and the default working directory resolve against it; fix its permissions ' +
          "(owner rwx) or the product's RootPath in the agent's configuration, or use absolute paths",
      );
    }
    return this.rootProblem;
  }

  /** Throws why the base directory cannot be used, if it still cannot. */
  private usableBase(): void {
    if (this.rootProblem && this.checkRoot()) throw this.rootProblem;
  }

  /**
   * The SetMode guard: a mode without the owner's rwx is refused on a
   * file-system root, an allowed root, a product root path, or a directory
   * that holds one of them — it would lock every session (and every host the
   * agent starts for that product) out of it, and only root could undo it.
   */
  guardMode(abs: string, mode: number): void {
    if ((mode & OWNER_RWX) === OWNER_RWX) return;
    const real = realLocationSync(abs);
    const isFsRoot = isFilesystemRoot(abs) || isFilesystemRoot(real);
    const held = [...(this.roots ?? []), this.ctx.rootPath, ...(this.ctx.productRoots ?? [])].find((r) => {
      const rr = path.resolve(this.ctx.baseDirectory, r);
      return isInside(rr, abs) || isInside(rr, real) || isInside(realLocationSync(rr), real);
    });
    if (!isFsRoot && held === undefined) return;
    const what = isFsRoot
      ? 'a file-system root'
      : `${held === abs ? '' : 'a directory holding '}the root ${held}`;
    throw pathError(
      'AccessDenied',
      abs,
      `refusing to take the owner's permissions (rwx) from ${what}: every session needs them; ` +
        `give a mode that keeps 0o700 (asked: 0o${mode.toString(8)})`,
    );
  }

  /** Whether paths are restricted at all. */
  get restricted(): boolean {
    return this.roots !== null;
  }

  /** Validates, makes absolute, applies the guards and `allowedRoots`; returns the absolute path. */
  resolve(input: unknown, opts: ResolveOptions): string {
    return this.lookupInner(input, opts, false).path;
  }

  /**
   * {@link resolve}, plus the path's `lstat` (taken once, for the check and
   * for the caller: the handlers of small requests need no second call).
   */
  lookup(input: unknown, opts: ResolveOptions): Resolved {
    return this.lookupInner(input, opts, true);
  }

  /**
   * A process's working directory: the base directory when none is given,
   * else the path resolved against it (symlinks followed) and checked
   * against `allowedRoots`; it must be an existing directory.
   */
  workingDirectory(input: string | null): string {
    if (input === null || input === '') this.usableBase();
    const given = input === null || input === '' ? this.ctx.baseDirectory : input;
    const cwd = this.resolve(given, { followFinal: true, what: 'working directory' });
    let st: BigIntStats | undefined;
    try {
      st = statSyncBig(cwd);
    } catch (err) {
      throw fsError(err, cwd);
    }
    if (!st) throw pathError('NotFound', cwd, 'working directory does not exist');
    if (!st.isDirectory()) throw pathError('NotDirectory', cwd, 'working directory is not a directory');
    return cwd;
  }

  private lookupInner(input: unknown, opts: ResolveOptions, wantStat: boolean): Resolved {
    const abs = absolutePath(this.ctx, input, opts.what);
    if (this.rootProblem && typeof input === 'string' && !path.isAbsolute(input)) this.usableBase();
    // Lexical guard first: `/` is refused as a root before any other check.
    if (opts.guard) this.guardLexical(abs, opts.guard);
    if (this.roots !== null) this.checkLexical(abs, opts.what);
    const st = wantStat || this.roots !== null || opts.guard ? lstatOrNull(abs) : null;
    const link = st?.isSymbolicLink() === true;
    if (opts.guard) this.guardReal(abs, opts.guard);
    if (this.roots !== null) this.checkReal(abs, opts.followFinal && link, opts.what);
    return { path: abs, st };
  }

  /** A file-system root or an allowed root, spelled literally. */
  private guardLexical(abs: string, op: Destructive): void {
    if (isFilesystemRoot(abs)) throw this.protectedRoot(abs, op, 'a file-system root');
    if (this.roots?.includes(abs)) throw this.protectedRoot(abs, op, 'an allowed root');
  }

  /** The same, for where `abs` really leads (every symlink followed, the final one too). */
  private guardReal(abs: string, op: Destructive): void {
    const real = realLocationSync(abs);
    if (isFilesystemRoot(real)) throw this.protectedRoot(abs, op, `a file-system root (it leads to ${real})`);
    if (this.roots?.some((r) => r === real || realLocationSync(r) === real))
      throw this.protectedRoot(abs, op, `an allowed root (it leads to ${real})`);
  }

  private protectedRoot(abs: string, op: Destructive, what: string): HostError {
    return pathError('AccessDenied', abs, `refusing to ${op} ${what}`);
  }

  private checkLexical(abs: string, what?: string): void {
    if (!this.roots!.some((r) => insideNormalized(abs, r))) throw this.denied(abs, what);
  }

  /** `throughFinal`: the final component is a symlink the operation follows. */
  private checkReal(abs: string, throughFinal: boolean, what?: string): void {
    const real = throughFinal
      ? realLocationSync(abs)
      : path.join(realLocationSync(path.dirname(abs)), path.basename(abs));
    for (const r of this.roots!) {
      if (insideNormalized(real, r)) return;
      if (insideNormalized(real, realLocationSync(r))) return;
    }
    throw this.denied(abs, what);
  }

  private denied(abs: string, what?: string): HostError {
    return pathError(
      'AccessDenied',
      abs,
      `${what && what !== 'path' ? `${what} is ` : ''}outside the allowed roots`,
    );
  }
}

function statSyncBig(p: string): BigIntStats | undefined {
  return statSync(p, { bigint: true, throwIfNoEntry: false });
}
