/**
 * Shared setup for the CLI tests: a real agent confined with AllowedRoots to
 * a fresh temp directory (`root`, whose product root paths are inside it),
 * and `outpost …` run from source with NO_COLOR=1 and no inherited
 * OUTPOST_KEY. Every path a test touches is under `root`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AgentProcess,
  type AgentProcessOptions,
  cliCommand,
  REPO_ROOT,
  type RunResult,
  runCli,
  startAgentProcess,
} from '../helpers/agent.js';

export interface CliAgent {
  agent: AgentProcess;
  root: string;
  /** `127.0.0.1:PORT` */
  target: string;
  keyHex: string;
  /** `127.0.0.1:PORT:<path under root>` */
  remote(rel: string): string;
  stop(): Promise<void>;
}

export async function makeRoot(): Promise<string> {
  return realpath(await mkdtemp(join(tmpdir(), 'outpost-cli-')));
}

export async function startCliAgent(
  options: AgentProcessOptions & { root?: string } = {},
): Promise<CliAgent> {
  const { root: given, ...agentOptions } = options;
  const ownRoot = given === undefined;
  const root = given ?? (await makeRoot());
  if (!ownRoot) await mkdir(root, { recursive: true });
  const agent = await startAgentProcess({
    mode: 'aes',
    allowedRoots: [root],
    rootPaths: {
      BuildMaster: join(root, 'bm'),
      Otter: join(root, 'otter'),
      Hedgehog: join(root, 'hedgehog'),
    },
    ...agentOptions,
  });
  const target = `${agent.host}:${agent.port}`;
  return {
    agent,
    root,
    target,
    keyHex: agent.key?.toString('hex') ?? '',
    remote: (rel) => `${target}:${join(root, rel)}`,
    async stop() {
      await agent.stop();
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}

/** The environment the CLI runs with: NO_COLOR=1, no OUTPOST_KEY unless given. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  if (extra.OUTPOST_KEY === undefined) delete env.OUTPOST_KEY;
  delete env.FORCE_COLOR;
  return env;
}

/** Runs `outpost <args>` to completion. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<RunResult> {
  return runCli(args, { env: cliEnv(env), timeoutMs });
}

/** Starts `outpost <args>` with pipes, for stdin and signal tests. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const { command, args: argv } = cliCommand(args);
  return spawn(command, argv, { cwd: REPO_ROOT, env: cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Collects a child's output and exit. */
export function collectChild(child: ChildProcess): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** SHA-256 of every file under `dir`, by relative `/`-separated name. */
export async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const visit = async (abs: string, rel: string) => {
    for (const e of await readdir(abs, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await visit(join(abs, e.name), r);
      else if (e.isFile())
        out.set(
          r,
          createHash('sha256')
            .update(await readFile(join(abs, e.name)))
            .digest('hex'),
        );
    }
  };
  await visit(dir, '');
  return out;
}

/** Asserts the run failed with one `outpost: …; …` line on stderr and returns that line. */
export function oneLineError(r: RunResult): string {
  const lines = r.stderr.trimEnd().split('\n');
  if (lines.length !== 1 || !/^outpost: .+; .+/.test(lines[0]!))
    throw new Error(`expected one "outpost: …; …" line on stderr, got:\n${r.stderr}`);
  return lines[0]!;
}
