/**
 * The instance's installed extensions: the `.upack` files UpdateAgent stored
 * in `ExtensionCachePath/<instance>/<product>/extensions` (the host learns
 * the folder at Init, HostSettings.extensionPath), each unpacked once into
 * `…/<product>/unpacked/<sha256 of the package file>/` — a temp directory
 * beside it, renamed when whole, so a half-unpacked package is never
 * loaded. The catalog is read afresh for every job (one stat per package;
 * a package is hashed again only when its inode, size or time changed), so
 * the next job after an UpdateAgent sees the new version.
 *
 * A package: a zip with `upack.json` ({name, version, module}) and a
 * `package/` folder; `module` names the ES module, relative to `package/`,
 * that exports `jobs` (job type → function). Unpacking refuses escapes,
 * links and packages over MaxExtractedSize (src/host/archive.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extractArchive, unsafeEntryName } from './archive.js';
import { tempNameFor } from './fs-util.js';

export interface InstalledExtension {
  /** Package file name (`example.upack`). */
  readonly file: string;
  readonly name: string;
  readonly version: string;
  /** Absolute path of its ES module. */
  readonly module: string;
}

/** A package that could not be used, and why (reported beside the installed list). */
export interface BrokenExtension {
  readonly file: string;
  readonly problem: string;
}

async function sha256Of(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file), async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) h.update(c);
  });
  return h.digest('hex');
}

export class ExtensionCatalog {
  private readonly memo = new Map<string, { key: string; ext: InstalledExtension }>();

  constructor(
    private readonly extensionPath: string | null | undefined,
    private readonly maxBytes: number,
  ) {}

  /** Installed packages in file-name order, and the ones that are broken. */
  async list(): Promise<{ installed: InstalledExtension[]; broken: BrokenExtension[] }> {
    const installed: InstalledExtension[] = [];
    const broken: BrokenExtension[] = [];
    if (!this.extensionPath) return { installed, broken };
    let names: string[];
    try {
      names = await readdir(this.extensionPath);
    } catch {
      return { installed, broken };
    }
    names = names.filter((n) => n.toLowerCase().endsWith('.upack') && !n.startsWith('.')).sort();
    for (const name of names) {
      try {
        installed.push(await this.load(name));
      } catch (err) {
        broken.push({ file: name, problem: (err as Error).message });
      }
    }
    return { installed, broken };
  }

  private async load(name: string): Promise<InstalledExtension> {
    const file = path.join(this.extensionPath!, name);
    const st = await stat(file);
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const known = this.memo.get(name);
    if (known?.key === key) return known.ext;
    const hash = await sha256Of(file);
    const dir = path.join(path.dirname(this.extensionPath!), 'unpacked', hash);
    if (!(await stat(dir).catch(() => null))) {
      await mkdir(path.dirname(dir), { recursive: true });
      const tmp = `${tempNameFor(dir)}.d`;
      try {
        await extractArchive(file, tmp, { maxBytes: this.maxBytes, format: 'zip' });
        await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
          // Another host of the instance unpacked the same package first: theirs is as good.
          if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
          await rm(tmp, { recursive: true, force: true });
        });
      } catch (err) {
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw err;
      }
    }
    const ext = await describe(name, dir);
    this.memo.set(name, { key, ext });
    return ext;
  }
}

async function describe(file: string, dir: string): Promise<InstalledExtension> {
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(await readFile(path.join(dir, 'upack.json'), 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`upack.json is missing or not JSON (${(err as Error).message})`);
  }
  const str = (k: string) => {
    const v = meta[k];
    if (typeof v !== 'string' || v === '') throw new Error(`upack.json needs a string "${k}"`);
    return v;
  };
  const name = str('name');
  const version = str('version');
  const module = str('module');
  const why = unsafeEntryName(module);
  if (why) throw new Error(`upack.json "module" ${why}`);
  const abs = path.join(dir, 'package', ...module.split('/'));
  if (!(await stat(abs).catch(() => null))?.isFile())
    throw new Error(`upack.json "module" names package/${module}, which the package does not contain`);
  return { file, name, version, module: abs };
}
