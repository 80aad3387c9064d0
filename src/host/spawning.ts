/**
 * How StartProcess turns its arguments into a spawned child (PROTOCOL.md
 * §5.2): argument checks the codec cannot make, the effective environment,
 * the executable resolved here (PATH of the *effective* environment, so
 * errors are precise and synchronous with the request), the shell command
 * line, and the spawn itself (resolved once the pid is real).
 */
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';
import { ProcessFlags, type RequestOf } from '../protocol/index.js';
import { fsError, pathError } from './fs-errors.js';
import { HostError } from './types.js';

export const IS_WINDOWS = process.platform === 'win32';
const KNOWN_FLAGS = ProcessFlags.KeepStdinOpen | ProcessFlags.UseShell | ProcessFlags.EmptyEnvironment;
/** execvp's default search path when the environment has no PATH (glibc). */
const DEFAULT_POSIX_PATH = '/bin:/usr/bin';
/** `$0` of a shell command line: the args are `$1`, `$2`, … */
const SHELL_ARGV0 = 'sh';

/** What to spawn for a StartProcess request. */
export interface Launch {
  readonly file: string;
  readonly argv: string[];
  readonly argv0: string | undefined;
  readonly verbatim: boolean;
}

/**
 * The program and argv for a request. With UseShell, `fileName` is a
 * command line for `/bin/sh -c` and the args become its positional
 * parameters (`$1`…; `$0` is "sh"), so they arrive literally whatever they
 * contain. Windows has no positional parameters: the args are quoted onto
 * the `cmd.exe /d /s /c` line instead.
 */
export async function launchFor(
  args: RequestOf<'StartProcess'>,
  cwd: string,
  env: Record<string, string>,
  useShell: boolean,
): Promise<Launch> {
  if (useShell) {
    if (IS_WINDOWS) {
      const file = envGet(env, 'ComSpec') ?? process.env.ComSpec ?? 'cmd.exe';
      const line = `"${[args.fileName, ...args.args.map(cmdQuote)].join(' ')}"`;
      return { file, argv: ['/d', '/s', '/c', line], argv0: undefined, verbatim: true };
    }
    return {
      file: '/bin/sh',
      argv: ['-c', args.fileName, SHELL_ARGV0, ...args.args],
      argv0: undefined,
      verbatim: false,
    };
  }
  const file = await resolveExecutable(args.fileName, cwd, env);
  return { file, argv: args.args, argv0: args.fileName, verbatim: false };
}

/** Sends `sig` to the process, or to its whole process group (`tree`). */
export function signal(pid: number, tree: boolean, sig: NodeJS.Signals): void {
  try {
    process.kill(tree ? -pid : pid, sig);
  } catch {
    // ESRCH: already gone.
  }
}

/** Spawns and waits for 'spawn' (the pid is real) or 'error'. */
export function spawnChild(file: string, argv: string[], options: SpawnOptions): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(file, argv, options);
    } catch (e) {
      reject(pathError('InvalidArgument', file, `cannot start: ${(e as Error).message}`));
      return;
    }
    const onError = (err: NodeJS.ErrnoException) => {
      child.off('spawn', onSpawn);
      child.stdin?.destroy();
      child.stdout?.destroy();
      child.stderr?.destroy();
      reject(fsError(err, err.code === 'ENOENT' ? `${file} (or its #! interpreter)` : file));
    };
    const onSpawn = () => {
      child.off('error', onError);
      resolve(child);
    };
    child.once('error', onError);
    child.once('spawn', onSpawn);
  });
}

function hasNul(s: string): boolean {
  return s.includes('\0');
}

/** Shape checks the codec cannot make; returns the flags. */
export function validateStart(args: RequestOf<'StartProcess'>): number {
  if (typeof args !== 'object' || args === null) throw new HostError('InvalidArgument', 'missing arguments');
  const { fileName, args: argv, workingDirectory, environment, flags } = args;
  if (typeof fileName !== 'string' || fileName === '')
    throw new HostError('InvalidArgument', 'fileName must be a non-empty string');
  if (hasNul(fileName)) throw new HostError('InvalidArgument', 'fileName contains a NUL character');
  if (!Array.isArray(argv) || argv.some((a) => typeof a !== 'string'))
    throw new HostError('InvalidArgument', 'args must be strings');
  if (argv.some(hasNul)) throw new HostError('InvalidArgument', 'an argument contains a NUL character');
  if (workingDirectory !== null && typeof workingDirectory !== 'string')
    throw new HostError('InvalidArgument', 'workingDirectory must be a string or null');
  if (workingDirectory && hasNul(workingDirectory))
    throw new HostError('InvalidArgument', 'workingDirectory contains a NUL character');
  if (typeof environment !== 'object' || environment === null)
    throw new HostError('InvalidArgument', 'environment must be a map');
  for (const [k, v] of Object.entries(environment)) {
    if (k === '' || hasNul(k) || (IS_WINDOWS ? k.indexOf('=', 1) > 0 : k.includes('=')))
      throw new HostError('InvalidArgument', `invalid environment variable name ${JSON.stringify(k)}`);
    if (typeof v !== 'string' || hasNul(v))
      throw new HostError('InvalidArgument', `environment variable ${k} has an invalid value`);
  }
  if (!Number.isInteger(flags)) throw new HostError('InvalidArgument', 'flags must be an integer');
  if ((flags & ~KNOWN_FLAGS) !== 0)
    throw new HostError('Unsupported', `unknown StartProcess flags 0x${(flags & ~KNOWN_FLAGS).toString(16)}`);
  return flags;
}

/** A PATH entry that `npm run` / `npx` put there (node_modules/.bin, npm's node-gyp-bin). */
const NPM_PATH_ENTRY = /[\\/]node_modules[\\/]\.bin[\\/]?$|[\\/]node-gyp-bin[\\/]?$/;

/** True when `npm run` / `npx` started this process tree (it sets npm_* variables). */
function startedByNpm(source: NodeJS.ProcessEnv): boolean {
  for (const k of Object.keys(source)) if (/^npm_/i.test(k)) return true;
  return false;
}

function cleanPath(value: string): string {
  const sep = IS_WINDOWS ? ';' : ':';
  return value
    .split(sep)
    .filter((p) => !NPM_PATH_ENTRY.test(p))
    .join(sep);
}

/**
 * The agent's service environment as remote processes see it: the host's
 * environment without what `npm start` / `npm run` injects — every `npm_*`
 * variable, and then `INIT_CWD` and `NODE`, and the `node_modules/.bin`
 * (and node-gyp-bin) entries it put on PATH. The one place this is decided:
 * StartProcess's inherited environment and GetEnvironmentVariable both use
 * it. Read afresh each time (a copy of ~100 variables, beside a spawn).
 */
export function serviceEnvironment(source: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  const npm = startedByNpm(source);
  for (const [k, v] of Object.entries(source)) {
    if (v === undefined || /^npm_/i.test(k)) continue;
    if (npm && (k === 'INIT_CWD' || k === 'NODE')) continue;
    env[k] = k.toUpperCase() === 'PATH' ? cleanPath(v) : v;
  }
  return env;
}

/** One variable of the service environment (case-insensitive on Windows): GetEnvironmentVariable. */
export function serviceEnvironmentVariable(
  name: string,
  source: NodeJS.ProcessEnv = process.env,
): string | null {
  if (/^npm_/i.test(name)) return null;
  if ((name === 'INIT_CWD' || name === 'NODE') && startedByNpm(source)) return null;
  const value = source[name];
  if (value === undefined) return null;
  return name.toUpperCase() === 'PATH' ? cleanPath(value) : value;
}

export function buildEnvironment(overlay: Record<string, string>, empty: boolean): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  if (!empty) Object.assign(env, serviceEnvironment());
  for (const [k, v] of Object.entries(overlay)) {
    if (IS_WINDOWS) {
      // Windows names are case-insensitive: the overlay replaces, never duplicates.
      for (const existing of Object.keys(env))
        if (existing.toUpperCase() === k.toUpperCase()) delete env[existing];
    }
    env[k] = v;
  }
  return env;
}

function envGet(env: Record<string, string>, name: string): string | undefined {
  if (!IS_WINDOWS) return env[name];
  const key = Object.keys(env).find((k) => k.toUpperCase() === name.toUpperCase());
  return key === undefined ? undefined : env[key];
}

type Probe = 'ok' | 'missing' | 'directory' | 'noexec';

async function probe(file: string): Promise<Probe> {
  try {
    const st = await stat(file);
    if (st.isDirectory()) return 'directory';
    if (!st.isFile()) return 'noexec';
    await access(file, fsConstants.X_OK);
    return 'ok';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? 'noexec' : 'missing';
  }
}

/**
 * The absolute path to execute: a name with a directory part resolves
 * against the working directory; a bare name is searched in the PATH of the
 * child's own environment (execvp semantics, done here so errors are exact).
 */
export async function resolveExecutable(
  fileName: string,
  cwd: string,
  env: Record<string, string>,
): Promise<string> {
  const hasDir =
    fileName.includes('/') || (IS_WINDOWS && (fileName.includes('\\') || /^[a-z]:/i.test(fileName)));
  const exts = IS_WINDOWS && path.extname(fileName) === '' ? windowsExtensions(env) : [''];
  let candidates: string[];
  if (hasDir) {
    candidates = exts.map((x) => path.resolve(cwd, fileName + x));
  } else {
    const search = envGet(env, 'PATH') ?? (IS_WINDOWS ? '' : DEFAULT_POSIX_PATH);
    const dirs = search.split(path.delimiter);
    if (IS_WINDOWS) dirs.unshift(cwd);
    candidates = dirs.flatMap((d) => exts.map((x) => path.resolve(cwd, d, fileName + x)));
  }
  let denied: Probe | null = null;
  let deniedPath = '';
  for (const c of candidates) {
    const r = await probe(c);
    if (r === 'ok') return c;
    if (r !== 'missing' && (denied === null || (hasDir && r === 'directory'))) {
      denied = r;
      deniedPath = c;
    }
  }
  if (denied === 'directory' && hasDir) throw new HostError('IsDirectory', `${deniedPath} is a directory`);
  if (denied) throw new HostError('AccessDenied', `${deniedPath} is not executable`);
  throw new HostError(
    'NotFound',
    hasDir ? `executable ${candidates[0]} does not exist` : `executable ${fileName} was not found in PATH`,
  );
}

function windowsExtensions(env: Record<string, string>): string[] {
  const pathext = envGet(env, 'PATHEXT') ?? '.COM;.EXE;.BAT;.CMD';
  return ['', ...pathext.split(';').filter((x) => x !== '')];
}

/** One cmd.exe/CRT argument, quoted when needed (best effort: `%` still expands). */
function cmdQuote(s: string): string {
  if (s !== '' && !/[\s"&|<>^()]/.test(s)) return s;
  return `"${s.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\+)$/, '$1$1')}"`;
}
