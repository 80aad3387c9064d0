/**
 * Archives in and out of the host: safe extraction of zip (yauzl), tar and
 * tar.gz (plain ustar by the fast reader of tar-reader.ts, anything else by
 * node-tar's streaming Parser; an archive in parts that arrive while it is
 * extracted, extractArchiveParts), and creation of tar, tar.gz and zip
 * (yazl) archives of a directory. Used by the built-in jobs `outpost.extract`
 * and `outpost.archive` and by the extension catalog (a `.upack` is a zip).
 *
 * Safety, the same for every format: an entry whose name is absolute,
 * contains `..`, a NUL or a backslash escape is refused (zip-slip); symbolic
 * links, hard links and device entries are refused; the sum of the entries'
 * sizes may not pass `maxBytes` (checked against the declared sizes before
 * anything is written for zip, and against the bytes actually written for
 * both). A refusal is `InvalidArgument` (or `TooLarge` for the size) naming
 * the entry. Everything streams: no entry is held in memory whole.
 *
 * Where it lands (`extractArchive`): a target that does not exist yet
 * appears whole or not at all (a temp directory beside it, renamed at the
 * end); into an existing directory each file is written to a temp file
 * beside it and renamed over the old one, so a reader sees the old or the
 * new file, never half of one.
 */
import {
  closeSync,
  createReadStream,
  createWriteStream,
  futimesSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { create as createTar, Parser, type ReadEntry } from 'tar';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { errorCode, pathError } from './fs-errors.js';
import { tempNameFor } from './fs-util.js';
import { NotUstar, readUstar } from './tar-reader.js';
import { HostError } from './types.js';

export type ArchiveFormat = 'tar' | 'tar.gz' | 'zip';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['tar', 'tar.gz', 'zip'];

export interface ExtractOptions {
  /** Most bytes the entries may add up to (MaxExtractedSize). */
  readonly maxBytes: number;
  readonly signal?: AbortSignal | undefined;
  /** Format; guessed from the file's first bytes when absent. */
  readonly format?: ArchiveFormat | undefined;
  /**
   * Last-write times (ms since the epoch) by entry name, replacing the
   * archive's own (tar keeps whole seconds): a sync sets exact times.
   */
  readonly times?: ReadonlyMap<string, number> | undefined;
}

export interface ExtractResult {
  files: number;
  directories: number;
  bytes: number;
}

/** Why an entry name is unsafe, or null. */
export function unsafeEntryName(name: string): string | null {
  if (name.length === 0) return 'is empty';
  if (name.includes('\0')) return 'contains a NUL';
  if (name.includes('\\')) return 'contains a backslash';
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) return 'is absolute';
  if (name.split('/').some((s) => s === '..')) return 'contains ..';
  return null;
}

/**
 * Names made only of plain segments (letters, digits, `_`, `-`, `.`; none
 * empty or starting with a dot): safe as they are, so no split, filter and
 * join per entry — the common case of thousands of small files.
 */
const PLAIN_NAME = /^(?:[\w-][\w.-]*\/)*[\w-][\w.-]*\/?$/;

/** The entry's path below `root` (`/`-separated name), refusing escapes. */
function entryPath(root: string, name: string): string {
  if (PLAIN_NAME.test(name) && path.sep === '/' && !root.endsWith('/'))
    return `${root}/${name.endsWith('/') ? name.slice(0, -1) : name}`;
  const why = unsafeEntryName(name);
  if (why) throw new HostError('InvalidArgument', `archive entry ${JSON.stringify(name)} ${why}: refused`);
  const clean = name.split('/').filter((s) => s !== '' && s !== '.');
  const p = path.join(root, ...clean);
  if (p !== root && !p.startsWith(root + path.sep))
    throw new HostError(
      'InvalidArgument',
      `archive entry ${JSON.stringify(name)} escapes the target: refused`,
    );
  return p;
}

function tooLarge(maxBytes: number): HostError {
  return new HostError(
    'TooLarge',
    `the archive expands to more than ${maxBytes} bytes (MaxExtractedSize); raise MaxExtractedSize in the agent's config to allow it`,
  );
}

function timeOf(options: ExtractOptions, name: string, own: Date | null): Date | null {
  const times = options.times;
  if (!times) return own;
  const t = times.get(name.startsWith('./') ? name.slice(2) : name);
  return t === undefined ? own : new Date(t);
}

/** zip, tar.gz or tar from the first bytes of the file. */
export async function detectFormat(file: string): Promise<ArchiveFormat> {
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(4);
    await fh.read(head, 0, 4, 0);
    if (head[0] === 0x50 && head[1] === 0x4b) return 'zip';
    if (head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
    return 'tar';
  } finally {
    await fh.close();
  }
}

/** Entries up to this size are gathered in memory and written with synchronous calls in one go. */
const SMALL_ENTRY = 256 * 1024;

/**
 * Writes one entry's bytes to `target`: directly (`atomic` false: into a
 * fresh temp tree) or through a temp file beside it renamed over it.
 * Small entries are written with synchronous calls (open, write, futimes,
 * close, rename: no thread-pool round trip per call), which is what makes
 * thousands of small files fast; large ones stream.
 */
class EntryWriter {
  readonly made = new Set<string>();
  constructor(
    private readonly atomic: boolean,
    private readonly root: string,
  ) {}

  /**
   * Makes directory `p` (below the root) and its parents. A component that
   * is already there must be a real directory: a symbolic link in an
   * existing target (target/link → /etc) would carry the entries out of it.
   */
  dir(p: string): void {
    if (p === this.root || this.made.has(p)) return;
    this.dir(path.dirname(p));
    let st: ReturnType<typeof lstatSync> | undefined;
    try {
      st = lstatSync(p);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
    }
    if (!st) mkdirSync(p);
    else if (st.isSymbolicLink())
      throw new HostError(
        'InvalidArgument',
        `${path.relative(this.root, p)} is a symbolic link in the target: refusing to extract through it`,
      );
    else if (!st.isDirectory())
      throw pathError('NotDirectory', path.relative(this.root, p), 'a file is in the way of a directory');
    this.made.add(p);
  }

  private commit(tmp: string, p: string): void {
    if (!this.atomic) return;
    try {
      renameSync(tmp, p);
    } catch (err) {
      rmSync(tmp, { force: true });
      if (errorCode(err) === 'EISDIR' || errorCode(err) === 'ENOTEMPTY' || errorCode(err) === 'EEXIST')
        throw pathError('IsDirectory', path.relative(this.root, p), 'a directory is in the way of a file');
      throw err;
    }
  }

  small(p: string, data: Buffer, mode: number, mtime: Date | null): void {
    this.dir(path.dirname(p));
    const tmp = this.atomic ? tempNameFor(p) : p;
    const fd = openSync(tmp, 'w', (mode & 0o777) | 0o600);
    try {
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, done);
      if (mtime) futimesSync(fd, mtime, mtime);
    } catch (err) {
      closeSync(fd);
      if (this.atomic) rmSync(tmp, { force: true });
      throw err;
    }
    closeSync(fd);
    this.commit(tmp, p);
  }

  async stream(p: string, source: NodeJS.ReadableStream, mode: number, mtime: Date | null): Promise<void> {
    this.dir(path.dirname(p));
    const tmp = this.atomic ? tempNameFor(p) : p;
    try {
      await pipeline(source, createWriteStream(tmp, { mode: (mode & 0o777) | 0o600 }));
      if (mtime) await utimes(tmp, mtime, mtime);
    } catch (err) {
      if (this.atomic) await rm(tmp, { force: true }).catch(() => {});
      throw err;
    }
    this.commit(tmp, p);
  }
}

/** All of a small stream, as one buffer. */
function gather(source: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    source.on('data', (c: Buffer) => parts.push(c));
    source.once('error', reject);
    source.once('end', () => resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts)));
  });
}

/**
 * Extracts `archive` into `target` (see the file header for where files
 * land and what is refused).
 */
export async function extractArchive(
  archive: string,
  target: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const format = options.format ?? (await detectFormat(archive));
  return intoTarget(target, (root, writer) => extractInto(archive, root, format, writer, options));
}

/**
 * Extracts an archive that arrives in parts while it is extracted: the
 * files `<base>.0`, `<base>.1`, … each a run of whole ustar entries (the
 * SDK uploads each to a temp name and renames it when complete, so a part
 * that exists is whole), the last one ending with the end blocks. Each
 * part is waited for (up to {@link PART_STALL_MS} without a new one: the
 * sender is gone), extracted with the fast reader and deleted. Something
 * the fast reader does not know is refused: only the SDK sends parts.
 */
export async function extractArchiveParts(
  base: string,
  target: string,
  options: ExtractOptions,
): Promise<ExtractResult> {
  return intoTarget(target, async (root, writer) => {
    const result: ExtractResult = { files: 0, directories: 0, bytes: 0 };
    for (let i = 0; ; i++) {
      const part = `${base}.${i}`;
      await waitForFile(part, options.signal);
      let ended: boolean;
      try {
        ended = await extractUstar(part, root, writer, options, result);
      } catch (err) {
        if (err instanceof NotUstar)
          throw new HostError('InvalidArgument', `archive part ${part} is ${err.message}: refused`);
        throw err;
      } finally {
        await rm(part, { force: true }).catch(() => {});
      }
      if (ended) return result;
    }
  });
}

/** How long extractArchiveParts waits for the next part before giving up. */
export const PART_STALL_MS = 60_000;

async function waitForFile(file: string, signal: AbortSignal | undefined): Promise<void> {
  const until = Date.now() + PART_STALL_MS;
  for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
    signal?.throwIfAborted();
    const st = lstatOrNull(file);
    if (st?.isFile()) return;
    if (st) throw pathError('InvalidArgument', file, 'an archive part is not a regular file');
    if (Date.now() > until)
      throw new HostError(
        'InvalidArgument',
        `archive part ${file} did not arrive within ${PART_STALL_MS / 1000} s`,
      );
    await new Promise((r) => setTimeout(r, wait));
  }
}

function lstatOrNull(p: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}

/** Runs `extract` into `target`: an existing directory file by file; a new one appears whole. */
async function intoTarget(
  target: string,
  extract: (root: string, writer: EntryWriter) => Promise<ExtractResult>,
): Promise<ExtractResult> {
  const existing = await stat(target).catch(() => null);
  if (existing && !existing.isDirectory())
    throw pathError('NotDirectory', target, 'the extraction target is a file');
  if (existing) return extract(target, new EntryWriter(true, target));
  // A new directory appears whole or not at all.
  await mkdir(path.dirname(target), { recursive: true });
  const tmp = `${tempNameFor(target)}.d`;
  await mkdir(tmp);
  try {
    const result = await extract(tmp, new EntryWriter(false, tmp));
    await rename(tmp, target);
    return result;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

function extractInto(
  archive: string,
  root: string,
  format: ArchiveFormat,
  writer: EntryWriter,
  options: ExtractOptions,
): Promise<ExtractResult> {
  if (format === 'zip') return extractZip(archive, root, writer, options);
  if (format === 'tar.gz') return extractTar(archive, root, writer, options);
  const result: ExtractResult = { files: 0, directories: 0, bytes: 0 };
  return extractUstar(archive, root, writer, options, result).then(
    () => result,
    (err: unknown) => {
      // Not one the fast reader knows: node-tar reads it from the start (rewriting
      // what the fast pass wrote, byte for byte the same) and judges it by the usual rules.
      if (err instanceof NotUstar) return extractTar(archive, root, writer, options);
      throw err;
    },
  );
}

/**
 * A plain ustar archive (what the SDK sends) with the fast reader
 * (tar-reader.ts), counted into `result`; true when it had the end blocks.
 */
async function extractUstar(
  archive: string,
  root: string,
  writer: EntryWriter,
  options: ExtractOptions,
  result: ExtractResult,
): Promise<boolean> {
  let target = '';
  return readUstar(
    archive,
    {
      dir: (e) => {
        writer.dir(entryPath(root, e.name));
        result.directories++;
      },
      accept: (e) => {
        target = entryPath(root, e.name);
        result.bytes += e.size;
        if (result.bytes > options.maxBytes) throw tooLarge(options.maxBytes);
      },
      small: (e, data) => {
        writer.small(target, data, e.mode, timeOf(options, e.name, new Date(e.mtimeMs)));
        result.files++;
      },
      large: async (e, data) => {
        await writer.stream(target, data, e.mode, timeOf(options, e.name, new Date(e.mtimeMs)));
        result.files++;
      },
    },
    { smallMax: SMALL_ENTRY, signal: options.signal },
  );
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(file, { lazyEntries: true, decodeStrings: true, validateEntrySizes: true }, (err, zip) =>
      err
        ? reject(new HostError('InvalidArgument', `not a readable zip archive: ${err.message}`))
        : resolve(zip),
    ),
  );
}

/** Entries of a zip, one at a time (lazyEntries: the next is read only when asked for). */
async function* zipEntries(zip: yauzl.ZipFile): AsyncGenerator<yauzl.Entry> {
  for (;;) {
    const entry = await new Promise<yauzl.Entry | null>((resolve, reject) => {
      const onEntry = (e: yauzl.Entry) => {
        zip.off('end', onEnd);
        zip.off('error', onError);
        resolve(e);
      };
      const onEnd = () => {
        zip.off('entry', onEntry);
        zip.off('error', onError);
        resolve(null);
      };
      const onError = (err: Error) => {
        zip.off('entry', onEntry);
        zip.off('end', onEnd);
        reject(new HostError('InvalidArgument', `corrupt zip archive: ${err.message}`));
      };
      zip.once('entry', onEntry);
      zip.once('end', onEnd);
      zip.once('error', onError);
      zip.readEntry();
    });
    if (!entry) return;
    yield entry;
  }
}

async function extractZip(
  archive: string,
  root: string,
  writer: EntryWriter,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const zip = await openZip(archive);
  const result: ExtractResult = { files: 0, directories: 0, bytes: 0 };
  try {
    // Declared sizes first: an archive that would pass the limit writes nothing.
    let declared = 0;
    for await (const e of zipEntries(zip)) declared += e.uncompressedSize;
    if (declared > options.maxBytes) throw tooLarge(options.maxBytes);
  } finally {
    zip.close();
  }
  const again = await openZip(archive);
  try {
    for await (const e of zipEntries(again)) {
      options.signal?.throwIfAborted();
      const p = entryPath(root, e.fileName);
      const unixMode = (e.externalFileAttributes >>> 16) & 0xffff;
      const type = unixMode & S_IFMT;
      const isDir = e.fileName.endsWith('/') || type === S_IFDIR;
      if (type !== 0 && type !== S_IFDIR && type !== S_IFREG)
        throw new HostError(
          'InvalidArgument',
          `archive entry ${JSON.stringify(e.fileName)} is a ${type === S_IFLNK ? 'symbolic link' : 'special file'}: refused`,
        );
      if (isDir) {
        writer.dir(p);
        result.directories++;
        continue;
      }
      result.bytes += e.uncompressedSize;
      if (result.bytes > options.maxBytes) throw tooLarge(options.maxBytes);
      const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
        again.openReadStream(e, (err, s) =>
          err
            ? reject(new HostError('InvalidArgument', `corrupt zip entry ${e.fileName}: ${err.message}`))
            : resolve(s),
        ),
      );
      const mode = unixMode & 0o777 ? unixMode : 0o644;
      const mtime = timeOf(options, e.fileName, e.getLastModDate());
      if (e.uncompressedSize <= SMALL_ENTRY) writer.small(p, await gather(stream), mode, mtime);
      else await writer.stream(p, stream, mode, mtime);
      result.files++;
    }
  } finally {
    again.close();
  }
  return result;
}

async function extractTar(
  archive: string,
  root: string,
  writer: EntryWriter,
  options: ExtractOptions,
): Promise<ExtractResult> {
  const result: ExtractResult = { files: 0, directories: 0, bytes: 0 };
  // Entries are written one after the other: the parser waits while an entry's stream is full.
  let chain: Promise<void> = Promise.resolve();
  let failure: unknown = null;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      if (failure) {
        entry.resume();
        return;
      }
      try {
        options.signal?.throwIfAborted();
        const name = entry.path;
        const p = entryPath(root, name);
        if (entry.type === 'Directory') {
          entry.resume();
          result.directories++;
          chain = chain.then(() => writer.dir(p));
          return;
        }
        if (entry.type !== 'File' && entry.type !== 'OldFile' && entry.type !== 'ContiguousFile')
          throw new HostError(
            'InvalidArgument',
            `archive entry ${JSON.stringify(name)} is a ${entry.type === 'SymbolicLink' ? 'symbolic link' : entry.type === 'Link' ? 'hard link' : `${entry.type} entry`}: refused`,
          );
        result.bytes += entry.size ?? 0;
        if (result.bytes > options.maxBytes) throw tooLarge(options.maxBytes);
        result.files++;
        const mtime = timeOf(options, name, entry.mtime ?? null);
        const mode = entry.mode ?? 0o644;
        // The parser does not read on until this entry is consumed: writing keeps it paced.
        const source = entry as unknown as NodeJS.ReadableStream;
        chain =
          (entry.size ?? 0) <= SMALL_ENTRY
            ? chain.then(async () => writer.small(p, await gather(source), mode, mtime))
            : chain.then(() => writer.stream(p, source, mode, mtime));
        chain.catch((err: unknown) => {
          failure ??= err;
          entry.resume();
        });
      } catch (err) {
        failure ??= err;
        entry.resume();
      }
    },
  });
  const parsed = pipeline(createReadStream(archive), parser as unknown as NodeJS.WritableStream, {
    ...(options.signal ? { signal: options.signal } : {}),
  }).catch((err: unknown) => {
    failure ??=
      err instanceof Error && err.name === 'AbortError'
        ? err
        : new HostError('InvalidArgument', `not a readable tar archive: ${(err as Error).message}`);
  });
  await parsed;
  await chain.catch(() => {});
  if (failure) throw failure;
  return result;
}

export interface CreateOptions {
  readonly format: ArchiveFormat;
  readonly signal?: AbortSignal | undefined;
  /** Entries relative to `dir` (`/`-separated); default: the whole tree. */
  readonly entries?: readonly string[] | undefined;
}

/** The files and directories below `dir` (relative, `/`-separated), symbolic links skipped. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string) => {
    const names = await readdir(abs, { withFileTypes: true });
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const d of names) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        out.push(`${r}/`);
        await walk(path.join(abs, d.name), r);
      } else if (d.isFile()) out.push(r);
    }
  };
  await walk(dir, '');
  return out;
}

/** Writes an archive of `dir` to `out` (a temp file renamed at the end). Returns the entries written. */
export async function createArchive(dir: string, out: string, options: CreateOptions): Promise<number> {
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw pathError('NotDirectory', dir, 'the directory to archive does not exist');
  const entries = options.entries ? [...options.entries] : await listTree(dir);
  for (const e of entries) entryPath(dir, e.replace(/\/$/, '') || '.');
  const tmp = tempNameFor(out);
  await mkdir(path.dirname(out), { recursive: true });
  try {
    if (options.format === 'zip') {
      const zip = new yazl.ZipFile();
      const done = pipeline(
        zip.outputStream,
        createWriteStream(tmp),
        options.signal ? { signal: options.signal } : {},
      );
      for (const e of entries) {
        if (e.endsWith('/')) zip.addEmptyDirectory(e);
        else zip.addFile(path.join(dir, e), e);
      }
      zip.end();
      await done;
    } else {
      const stream = createTar(
        { cwd: dir, portable: true, noDirRecurse: true, gzip: options.format === 'tar.gz' },
        entries.map((e) => e.replace(/\/$/, '')),
      ) as unknown as NodeJS.ReadableStream;
      await pipeline(stream, createWriteStream(tmp), options.signal ? { signal: options.signal } : {});
    }
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  return entries.length;
}
