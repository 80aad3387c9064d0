/**
 * The one table that turns Node/libuv error codes into wire error kinds
 * (PROTOCOL.md §5.2), for file commands and process starts alike, and the
 * message format every such error uses: `<Kind>: <path>: <what happened>`,
 * e.g. `NotFound: /srv/app/a.txt: no such file or directory`.
 *
 * OS resource exhaustion (EMFILE, EAGAIN, ENOMEM) is `IOError`, not
 * `LimitExceeded`: that kind is kept for the limits Outpost is configured
 * with (open handles, processes per session), so a client can tell "you
 * asked for too much" from "the machine is short of something".
 */
import type { ErrorKindName } from '../protocol/index.js';
import { HostError } from './types.js';

/** errno (or Node `ERR_*`) code → [wire kind, human description]. */
export const FS_ERROR_TABLE: Readonly<Record<string, readonly [ErrorKindName, string]>> = {
  ENOENT: ['NotFound', 'no such file or directory'],
  EEXIST: ['AlreadyExists', 'already exists'],
  EACCES: ['AccessDenied', 'permission denied'],
  EPERM: ['AccessDenied', 'operation not permitted'],
  EISDIR: ['IsDirectory', 'is a directory'],
  ENOTDIR: ['NotDirectory', 'not a directory'],
  ENOTEMPTY: ['NotEmpty', 'directory not empty'],
  ENOSPC: ['IOError', 'no space left on device'],
  EDQUOT: ['IOError', 'disk quota exceeded'],
  EIO: ['IOError', 'input/output error'],
  EROFS: ['IOError', 'read-only file system'],
  EMFILE: ['IOError', 'too many open files'],
  ENFILE: ['IOError', 'too many open files in system'],
  EBUSY: ['IOError', 'resource busy or locked'],
  ETXTBSY: ['IOError', 'text file busy'],
  EXDEV: ['IOError', 'cross-device link not permitted'],
  EAGAIN: ['IOError', 'resource temporarily unavailable'],
  EINTR: ['IOError', 'interrupted system call'],
  ECANCELED: ['IOError', 'operation cancelled'],
  ESTALE: ['IOError', 'stale file handle'],
  EBADF: ['IOError', 'bad file descriptor'],
  ELOOP: ['IOError', 'too many levels of symbolic links'],
  EMLINK: ['IOError', 'too many links'],
  ENXIO: ['IOError', 'no such device or address'],
  ENODEV: ['IOError', 'no such device'],
  ENAMETOOLONG: ['InvalidArgument', 'file name too long'],
  EINVAL: ['InvalidArgument', 'invalid argument'],
  EFBIG: ['TooLarge', 'file too large'],
  ERR_FS_FILE_TOO_LARGE: ['TooLarge', 'file too large'],
  ENOMEM: ['IOError', 'out of memory'],
  ENOEXEC: ['InvalidArgument', 'exec format error'],
  E2BIG: ['TooLarge', 'argument list too long'],
  ENOSYS: ['Unsupported', 'function not implemented'],
  ENOTSUP: ['Unsupported', 'operation not supported'],
  EOPNOTSUPP: ['Unsupported', 'operation not supported'],
  ERR_INVALID_ARG_TYPE: ['InvalidArgument', 'invalid argument'],
  ERR_INVALID_ARG_VALUE: ['InvalidArgument', 'invalid argument'],
  ERR_OUT_OF_RANGE: ['InvalidArgument', 'argument out of range'],
};

/** A `HostError` whose message names the path: `<kind>: <path>: <detail>`. */
export function pathError(kind: ErrorKindName, path: string, detail: string): HostError {
  return new HostError(kind, `${kind}: ${path}: ${detail}`);
}

/** The `code` of a Node system error, if it has one. */
export function errorCode(err: unknown): string | undefined {
  if (err !== null && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * Maps anything thrown by a file-system call on `path` to a `HostError`.
 * `HostError`s pass through unchanged; codes not in the table are `IOError`.
 */
export function fsError(err: unknown, path: string): HostError {
  if (err instanceof HostError) return err;
  const code = errorCode(err);
  const known = code === undefined ? undefined : FS_ERROR_TABLE[code];
  if (known) return pathError(known[0], path, known[1]);
  const what = err instanceof Error ? err.message : String(err);
  return pathError('IOError', path, code ? `${code}: ${what}` : what);
}
