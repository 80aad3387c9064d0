/**
 * What the `outpost` command prints when something goes wrong, and with
 * which exit code. Every failure is one line on stderr:
 *
 *     outpost: <what happened>; <what to do>
 *
 * Exit codes (also in `outpost --help` and docs/CLI.md):
 *
 *   0    success
 *   1    usage, configuration or local error (bad argument, bad HOST:PATH, unreadable key/CA file, missing local file)
 *   2    connection error (host unreachable, wrong key, mode mismatch, TLS/thumbprint, timeout, connection lost)
 *   3    remote error (the agent refused or failed the operation: NotFound, AccessDenied, …; hash mismatch)
 *   4    fan-out (--hosts): at least one host failed; the summary says which and why
 *   130  interrupted (Ctrl-C)
 *   exec passes the remote exit code through (128+N when the process was killed by signal N)
 */
import {
  AbortError,
  ConnectionError,
  HandshakeError,
  MetaError,
  OutpostError,
  RemoteError,
  TimeoutError,
  VerificationError,
} from '../client/index.js';

import { EXIT } from './usage.js';

export { EXIT, EXIT_CODES_HELP } from './usage.js';

/** An error meant for the person at the terminal (printed without a stack). */
export class UsageError extends Error {
  override readonly name: string = 'UsageError';
}

/** A failure with its own exit code and a message that already says what to do. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EADDRNOTAVAIL: 'address not available',
};

/** Advice per remote error kind. */
const REMOTE_ADVICE: Record<string, string> = {
  NotFound: 'check the path (outpost ls HOST:DIR lists a directory)',
  AccessDenied: "the path is outside the agent's AllowedRoots or not accessible to the agent's user",
  AlreadyExists: 'remove it first or choose another path',
  IsDirectory:
    'it is a directory: list it with outpost ls, download it with outpost get, delete it with rm -r',
  NotDirectory: 'a part of the path is a file, not a directory',
  NotEmpty: 'pass -r to delete the directory with its contents',
  TooLarge: "the request exceeds the agent's MaxMessageSize",
  HostCrashed: "the agent's product host crashed; try again and check the agent's log",
  Unsupported: 'this agent does not implement that (another agent type with --agent-type, or a newer agent)',
  LimitExceeded:
    'a limit of the agent is reached (open files, processes, sessions); try again when work has finished',
  Canceled: 'the request was canceled',
  InvalidArgument: 'the agent rejected an argument; check the paths and options',
};

/** Strips the advice an SDK message already carries (`…; use …`), so ours replaces it. */
function firstClause(message: string): string {
  const i = message.indexOf('; ');
  return i < 0 ? message : message.slice(0, i);
}

/** The one-line message (without the `outpost: ` prefix) and exit code for any error. */
export function describeError(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof UsageError) return { message: err.message, exitCode: EXIT.USAGE };
  if (err instanceof AbortError) return { message: 'interrupted', exitCode: EXIT.INTERRUPTED };
  if (err instanceof TimeoutError)
    return {
      message: /sent no handshake reply/.test(err.message)
        ? `${firstClause(err.message)}; check the port (the agent's Listener/Port, default 46336)`
        : `${firstClause(err.message)}; check the host and port, or allow more time with --timeout MS`,
      exitCode: EXIT.CONNECTION,
    };
  if (err instanceof HandshakeError) return { message: handshakeMessage(err), exitCode: EXIT.CONNECTION };
  if (err instanceof ConnectionError)
    return {
      message: `${firstClause(err.message)}; the connection to the agent was lost, check the network and the agent's log`,
      exitCode: EXIT.CONNECTION,
    };
  if (err instanceof RemoteError) {
    const advice =
      err.command === 'StartProcess' && (err.code === 'NotFound' || err.code === 'AccessDenied')
        ? 'check the program name and --cwd (and the AllowedRoots of the agent), or run a command line with --shell'
        : err.code === 'AccessDenied' && /refusing to /.test(err.message)
          ? // The preserve-root guard: no hint about AllowedRoots, which would contradict it.
            'the agent never deletes, clears or replaces a file-system root or an AllowedRoots entry itself (like rm --preserve-root); act on what is inside it'
          : (REMOTE_ADVICE[err.code] ?? "see the agent's log for details");
    // A refusal on the temp file of an atomic write names the user's path, not the temp name.
    const message =
      err.path !== undefined && err.message.includes('.outpost-tmp')
        ? `${err.code}: cannot write ${err.path} (the agent could not create a file in its directory) (${err.command})`
        : err.message;
    return { message: `${message}; ${advice}`, exitCode: EXIT.REMOTE };
  }
  if (err instanceof MetaError)
    return { message: `${err.message}; see the agent's log for details`, exitCode: EXIT.REMOTE };
  if (err instanceof VerificationError)
    return { message: `${firstClause(err.message)}; the target was left unchanged, try again`, exitCode: 3 };
  if (err instanceof OutpostError) {
    // Local problems the SDK reports (e.g. an unreadable local path) carry an errno code.
    const local = /^E[A-Z]+$/.test(err.code);
    return {
      message: local ? `${err.message}; check the local path` : err.message,
      exitCode: local ? EXIT.USAGE : EXIT.REMOTE,
    };
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code))
      return { message: `${err.message}; check the local path`, exitCode: EXIT.USAGE };
    if (err instanceof TypeError || err instanceof RangeError) return { message: err.message, exitCode: 1 };
    return { message: `error: ${err.message}`, exitCode: EXIT.USAGE };
  }
  return { message: `error: ${String(err)}`, exitCode: EXIT.USAGE };
}

function handshakeMessage(err: HandshakeError): string {
  const what = firstClause(err.message);
  switch (err.code) {
    case 'CONNECT_FAILED': {
      const m = /^(.*): (E[A-Z_]+)$/.exec(what);
      const text = m ? `${m[1]} (${ERRNO_WORDS[m[2]!] ?? m[2]})` : what;
      return `${text}; check the host and port, and that the agent is running there (outpost serve)`;
    }
    case 'MODE_MISMATCH': {
      const agentMode = /uses encryption mode "(\w+)"/.exec(what)?.[1];
      const advice =
        agentMode === 'aes'
          ? "pass the agent's AES key with --key HEX or OUTPOST_KEY (or --mode aes)"
          : agentMode === 'ssl'
            ? "pass --mode ssl with the agent's certificate (--ca FILE) or its thumbprint (--thumbprint HEX)"
            : agentMode === 'none'
              ? 'pass --mode none (and no key)'
              : "use the agent's mode (--mode) with its key or certificate";
      return `${what}; ${advice}`;
    }
    case 'REJECTED':
      return `${what}; check --key or OUTPOST_KEY: it must be the key in the agent's InedoAgent.config`;
    case 'TLS_FAILED':
      return `${what}; pass the agent's certificate with --ca FILE, or pin it with --thumbprint HEX`;
    case 'THUMBPRINT_MISMATCH':
      return `${err.message}; check --thumbprint against the one the agent printed`;
    case 'NOT_AGENT':
      return `${what}; check the port (the agent's Listener/Port, default 46336)`;
    case 'REFUSED':
      return `${what}; check that it is an Outpost/Inedo agent and that it accepts connections from this address`;
    default:
      return `${what}; check the connection options (--mode, --key, --ca, --thumbprint)`;
  }
}

/** Prints `outpost: <message>` (and the stack with OUTPOST_DEBUG=1); returns the exit code. */
export function reportError(err: unknown): number {
  const { message, exitCode } = describeError(err);
  process.stderr.write(`outpost: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
  if (process.env.OUTPOST_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return exitCode;
}

/** Waits until what was written to stdout and stderr has been handed to the OS. */
export async function flushOutput(): Promise<void> {
  await Promise.all(
    [process.stdout, process.stderr].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed || s.writableEnded) return resolve();
          s.write('', () => resolve());
        }),
    ),
  );
}

/**
 * Wraps a client command's action: runs it, reports any error as one line,
 * flushes output and exits with the code it returned (or the error's code).
 * Client commands exit explicitly so that nothing (stdin, a lingering
 * socket) keeps the process alive once the work is done.
 */
export function clientAction<A extends unknown[]>(
  fn: (...args: A) => Promise<number | undefined>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    // A promise that can never settle (nothing left to wait for) would let
    // Node exit 0 with no output: a false success. Say so and fail instead.
    const onBeforeExit = () => {
      process.stderr.write(
        'outpost: the command stopped before it finished (it waited for something that can no longer come); ' +
          'run it again, with OUTPOST_DEBUG=1 to report it\n',
      );
      process.exit(EXIT.USAGE);
    };
    process.once('beforeExit', onBeforeExit);
    let code: number;
    try {
      code = (await fn(...args)) ?? EXIT.OK;
    } catch (err) {
      code = reportError(err);
    } finally {
      process.removeListener('beforeExit', onBeforeExit);
    }
    await flushOutput();
    process.exit(code);
  };
}
