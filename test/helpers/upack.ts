/**
 * Packs the example extension (examples/extension) the way a user does,
 * with its own pack script (yazl), and variants of it for version tests.
 */
import { execFile } from 'node:child_process';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from './agent.js';

export const EXAMPLE_DIR = join(REPO_ROOT, 'examples', 'extension');

/** Runs `node pack.mjs OUT` in `dir` (default: the example); resolves with OUT. */
export function packExtension(out: string, dir = EXAMPLE_DIR): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(EXAMPLE_DIR, 'pack.mjs'), out, dir], { cwd: dir }, (err, _o, stderr) =>
      err ? reject(new Error(`pack.mjs failed: ${stderr || err.message}`)) : resolve(out),
    );
  });
}

/**
 * A copy of the example in `work` whose example.hello answers `greeting`
 * and whose version is `version`; packed to `out`.
 */
export async function packVariant(
  work: string,
  out: string,
  version: string,
  greeting: string,
): Promise<string> {
  await cp(EXAMPLE_DIR, work, { recursive: true });
  const meta = JSON.parse(await readFile(join(work, 'upack.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(join(work, 'upack.json'), JSON.stringify({ ...meta, version }));
  const index = join(work, 'package', 'index.mjs');
  const src = await readFile(index, 'utf8');
  // biome-ignore lint/suspicious/noTemplateCurlyInString: this is the module's source text
  await writeFile(index, src.replace('return `hello, ${name}`;', `return \`${greeting}, \${name}\`;`));
  return packExtension(out, work);
}
