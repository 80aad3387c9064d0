/**
 * ListDirectory (PROTOCOL.md §5.2): the entries below a directory (not the
 * directory itself), recursive on request, filtered by include/exclude
 * globs matched against each entry's path relative to the listed directory
 * with `/` separators. Symbolic links are listed (as themselves) and never
 * descended into; an excluded directory is not descended into either; an
 * entry that vanishes during the walk is skipped. Entries are sorted by
 * path (code unit order); a listing that would not fit the message limit is
 * `TooLarge`, found while walking rather than after building it all.
 */
import type { BigIntStats, Dir } from 'node:fs';
import { lstatSync } from 'node:fs';
import { opendir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type picomatchType from 'picomatch';
import { type FileEntry, type RequestOf, type ResultOf, TOKEN_SIZE } from '../protocol/index.js';
import { errorCode, fsError, pathError } from './fs-errors.js';
import { asBool, asStrings, bad, entryOf, stringSize, tryStatSync } from './fs-util.js';

/** ListDirectory lstats this many entries per batch. */
const LIST_BATCH = 64;
/** Fixed part of a FileEntry on the wire: isDirectory u8 + size i64 + ticks i64 + mode i32. */
const ENTRY_FIXED_SIZE = 1 + 8 + 8 + 4;

/** picomatch is loaded on the first glob, not at host boot (it is a quarter of a boot's module loading). */
let picomatchFn: typeof picomatchType | null = null;
function loadPicomatch(): typeof picomatchType {
  picomatchFn ??= createRequire(import.meta.url)('picomatch') as typeof picomatchType;
  return picomatchFn;
}

function compile(globs: string[], what: string): ((name: string) => boolean) | null {
  if (globs.length === 0) return null;
  try {
    return loadPicomatch()(globs, { dot: true, windows: false });
  } catch (err) {
    throw bad(what, `invalid glob: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Lists below `root` (already resolved and checked by the caller).
 * `maxMessageSize` bounds the encoded result.
 */
export async function listDirectory(
  root: string,
  a: RequestOf<'ListDirectory'>,
  maxMessageSize: number,
): Promise<ResultOf<'ListDirectory'>> {
  const recursive = asBool(a.recursive, 'recursive');
  const isIncluded = compile(asStrings(a.include, 'include'), 'include');
  const isExcluded = compile(asStrings(a.exclude, 'exclude'), 'exclude');

  const st = tryStatSync(root);
  if (!st) throw pathError('NotFound', root, 'no such file or directory');
  if (!st.isDirectory()) throw pathError('NotDirectory', root, 'not a directory');

  let size = TOKEN_SIZE + 4;
  const entries: FileEntry[] = [];
  const stack: { abs: string; rel: string }[] = [{ abs: root, rel: '' }];

  // One synchronous lstat per entry: a few microseconds each, against a
  // thread-pool round trip and a promise each.
  const processBatch = (dirAbs: string, rel: string, names: string[]): void => {
    for (const n of names) {
      const abs = path.join(dirAbs, n);
      let est: BigIntStats | undefined;
      try {
        est = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
      } catch (err) {
        if (errorCode(err) !== 'ENOTDIR') throw fsError(err, abs);
      }
      if (!est) continue; // vanished meanwhile
      const name = rel === '' ? n : `${rel}/${n}`;
      if (isExcluded?.(name)) continue;
      if (!isIncluded || isIncluded(name)) {
        size += stringSize(abs) + ENTRY_FIXED_SIZE;
        if (size > maxMessageSize) {
          throw pathError(
            'TooLarge',
            root,
            `listing exceeds the message limit of ${maxMessageSize} bytes; narrow it with include/exclude or list non-recursively`,
          );
        }
        entries.push(entryOf(abs, est));
      }
      if (recursive && est.isDirectory()) stack.push({ abs, rel: name });
    }
  };

  for (let next = stack.pop(); next; next = stack.pop()) {
    const { abs, rel } = next;
    let dir: Dir;
    try {
      dir = await opendir(abs, { bufferSize: LIST_BATCH });
    } catch (err) {
      const code = errorCode(err);
      if (rel !== '' && (code === 'ENOENT' || code === 'ENOTDIR')) continue;
      throw fsError(err, abs);
    }
    let batch: string[] = [];
    try {
      for await (const d of dir) {
        batch.push(d.name);
        if (batch.length >= LIST_BATCH) {
          processBatch(abs, rel, batch);
          batch = [];
        }
      }
    } catch (err) {
      throw fsError(err, abs);
    }
    processBatch(abs, rel, batch);
  }
  entries.sort((x, y) => (x.fullPath < y.fullPath ? -1 : x.fullPath > y.fullPath ? 1 : 0));
  return { entries };
}
