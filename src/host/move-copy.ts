/**
 * Move and CopyFile (PROTOCOL.md §5.2). Both create the target's parents;
 * CopyFile keeps mode and last-write time and replaces atomically. Move is a
 * rename, falling back to copy-then-delete across file systems (EXDEV).
 * Move never replaces a directory: with `overwrite` an existing target
 * directory is `IsDirectory`, and a directory source never replaces an
 * existing file (`AlreadyExists`). Sources and targets get the
 * preserve-root guards through the resolver.
 */
import { constants as fsc, type Stats } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, opendir, readlink, rm, symlink, utimes } from 'node:fs/promises';
import path from 'node:path';
import type { RequestOf, ResultOf } from '../protocol/index.js';
import type { AtomicWriter } from './atomic.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import {
  asBool,
  ensureDirectory,
  ensureDirectorySync,
  tryLstatSync,
  tryStat,
  writeTarget,
} from './fs-util.js';
import type { PathResolver } from './paths.js';

export class MoveCopy {
  constructor(
    private readonly paths: PathResolver,
    private readonly atomic: AtomicWriter,
  ) {}

  async move(a: RequestOf<'Move'>): Promise<ResultOf<'Move'>> {
    const src = this.paths.resolve(a.source, { followFinal: false, what: 'source', guard: 'move' });
    const dst = this.paths.resolve(a.target, { followFinal: false, what: 'target', guard: 'replace' });
    const overwrite = asBool(a.overwrite, 'overwrite');
    const sst = tryLstatSync(src);
    if (!sst) throw pathError('NotFound', src, 'no such file or directory');
    if (src === dst) return {};
    const dstSt = tryLstatSync(dst);
    // On a case-insensitive file system `a` → `A` finds the source itself: a rename, not a clash.
    const sameEntry =
      dstSt !== null &&
      dstSt.ino === sst.ino &&
      dstSt.dev === sst.dev &&
      src.toLowerCase() === dst.toLowerCase();
    if (dstSt && !sameEntry) {
      if (!overwrite) throw pathError('AlreadyExists', dst, 'already exists');
      if (dstSt.isDirectory())
        throw pathError('IsDirectory', dst, 'is a directory; Move replaces files only');
      if (sst.isDirectory())
        throw pathError('AlreadyExists', dst, 'already exists; a directory never replaces a file');
    }
    if (sst.isDirectory() && (dst + path.sep).startsWith(src + path.sep)) {
      throw pathError('InvalidArgument', dst, 'cannot move a directory into itself');
    }
    ensureDirectorySync(path.dirname(dst));
    try {
      await this.atomic.rename(src, dst);
    } catch (err) {
      const code = errorCode(err);
      if (code !== 'EXDEV') throw fsError(err, code === 'ENOENT' ? src : dst);
      await this.crossDeviceMove(src, dst, sst);
    }
    await this.atomic.syncDirectoryOf(path.dirname(dst), dstSt?.dev ?? sst.dev);
    return {};
  }

  /** Move across file systems: copy to a temp name beside `dst`, rename, delete `src`. */
  private async crossDeviceMove(src: string, dst: string, sst: Stats): Promise<void> {
    if (sst.isFile()) {
      await this.atomic.atomicReplace(dst, (tmp) => copyFile(src, tmp, fsc.COPYFILE_EXCL), {
        mode: sst.mode & 0o7777,
        mtime: sst.mtimeMs / 1000,
        atime: sst.atimeMs / 1000,
      });
    } else {
      const { tmp, ready } = this.atomic.temps.begin(dst);
      try {
        if (ready) await ready;
        await this.copyTree(src, tmp);
        await this.atomic.renameAsync(tmp, dst);
      } catch (err) {
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw fsError(err, dst);
      } finally {
        this.atomic.temps.end(tmp);
      }
    }
    try {
      await rm(src, { recursive: true, force: true, maxRetries: 2 });
    } catch (err) {
      throw fsError(err, src);
    }
  }

  /** Copies a tree (no symlink following); special files are `Unsupported`. */
  private async copyTree(src: string, dst: string): Promise<void> {
    const st = await lstat(src);
    if (st.isSymbolicLink()) {
      await symlink(await readlink(src), dst);
    } else if (st.isFile()) {
      await copyFile(src, dst, fsc.COPYFILE_EXCL);
      await chmod(dst, st.mode & 0o7777);
      await utimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
    } else if (st.isDirectory()) {
      await mkdir(dst, { mode: 0o700 });
      for await (const d of await opendir(src))
        await this.copyTree(path.join(src, d.name), path.join(dst, d.name));
      await chmod(dst, st.mode & 0o7777);
      await utimes(dst, st.atimeMs / 1000, st.mtimeMs / 1000);
    } else {
      throw pathError('Unsupported', src, 'cannot move a special file across file systems');
    }
  }

  async copyFile(a: RequestOf<'CopyFile'>): Promise<ResultOf<'CopyFile'>> {
    const src = this.paths.resolve(a.source, { followFinal: true, what: 'source' });
    const dstIn = this.paths.resolve(a.target, { followFinal: true, what: 'target', guard: 'replace' });
    const overwrite = asBool(a.overwrite, 'overwrite');
    const sst = await tryStat(src);
    if (!sst) throw pathError('NotFound', src, 'no such file or directory');
    if (sst.isDirectory()) throw pathError('IsDirectory', src, 'is a directory; CopyFile copies files only');
    if (!sst.isFile()) throw pathError('InvalidArgument', src, 'not a regular file');
    const { path: dst, existing: dstSt } = writeTarget(dstIn, tryLstatSync(dstIn));
    if (dstSt) {
      if (dstSt.isDirectory()) throw pathError('IsDirectory', dst, 'is a directory');
      if (!overwrite) throw pathError('AlreadyExists', dst, 'already exists');
    }
    await ensureDirectory(path.dirname(dst));
    await this.atomic.atomicReplace(
      dst,
      async (tmp) => {
        try {
          await copyFile(src, tmp, fsc.COPYFILE_EXCL);
        } catch (err) {
          throw fsError(err, errorCode(err) === 'ENOENT' ? src : dst);
        }
      },
      { mode: sst.mode & 0o7777, mtime: sst.mtimeMs / 1000, atime: sst.atimeMs / 1000 },
    );
    return {};
  }
}
