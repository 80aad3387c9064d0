/**
 * Secret files the CLI reads (AES key files, the hosts file when it holds
 * keys): refused, as ssh does, when group or others may read them, with the
 * chmod that fixes it. POSIX modes only (not on Windows).
 */
import { readFile, stat } from 'node:fs/promises';
import { UsageError } from './errors.js';

/** Throws a UsageError naming the fix when `file` is readable by group or others. */
export async function checkPrivate(file: string, what: string): Promise<void> {
  if (process.platform === 'win32') return;
  const st = await stat(file);
  if ((st.mode & 0o077) !== 0)
    throw new UsageError(
      `${what} ${file} is readable by others (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); ` +
        `make it private: chmod 600 ${file}`,
    );
}

/** Reads a key file (first line that is not blank or a `#` comment), refusing one others can read. */
export async function readKeyFile(file: string, where: string): Promise<string> {
  let text: string;
  try {
    await checkPrivate(file, `${where}: the key file`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(
      `${where}: cannot read the key file ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the path`,
    );
  }
  return text.split(/\r?\n/).find((l) => l.trim() !== '' && !l.trim().startsWith('#')) ?? '';
}
