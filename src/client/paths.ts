/**
 * Remote path arithmetic (internal). The agent's paths are its platform's;
 * it reports its separator in GetAgentInfo. On a Windows agent both `\` and
 * `/` separate; elsewhere only `/`.
 */
import { randomBytes } from 'node:crypto';

/** Suffix of every temp name the SDK creates (remote and local). */
export const TEMP_SUFFIX = '.outpost-tmp';

/** Joins and splits paths with the agent's separator. */
export class RemotePaths {
  constructor(readonly sep: string) {}

  private isSep(c: string | undefined): boolean {
    return c === '/' || (this.sep === '\\' && c === '\\');
  }

  /** `base` joined with a `/`-separated relative name. */
  join(base: string, rel: string): string {
    if (rel === '') return base;
    let b = base;
    while (b.length > 1 && this.isSep(b[b.length - 1])) b = b.slice(0, -1);
    const tail = this.sep === '/' ? rel : rel.split('/').join(this.sep);
    return this.isSep(b[b.length - 1]) ? b + tail : b + this.sep + tail;
  }

  /** Index of the last separator, or -1. */
  private lastSep(p: string): number {
    for (let i = p.length - 1; i >= 0; i--) if (this.isSep(p[i])) return i;
    return -1;
  }

  dirname(p: string): string {
    const i = this.lastSep(p);
    if (i < 0) return '';
    return i === 0 ? p.slice(0, 1) : p.slice(0, i);
  }

  basename(p: string): string {
    return p.slice(this.lastSep(p) + 1);
  }

  /** A fresh temp name beside `target`: `.<name>.<random>.outpost-tmp`. */
  tempFor(target: string): string {
    const dir = this.dirname(target);
    const name = `.${this.basename(target).slice(0, 64)}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`;
    return dir === '' ? name : this.isSep(dir[dir.length - 1]) ? dir + name : dir + this.sep + name;
  }
}

/** Throws a TypeError unless `p` is a non-empty string without NUL. */
export function checkPath(p: unknown, what = 'path'): asserts p is string {
  if (typeof p !== 'string' || p === '')
    throw new TypeError(`${what} must be a non-empty string, got ${p === '' ? 'an empty string' : typeof p}`);
  if (p.includes('\0')) throw new TypeError(`${what} must not contain NUL characters: ${JSON.stringify(p)}`);
}
