/**
 * One child process as the ProcessManager tracks it: its pipes, its state
 * from start to `Exited`, the timers of its end, and the ordered writes to
 * its stdin.
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { HostError } from './types.js';

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: string | null;
}

export interface Proc {
  readonly token: number;
  readonly pid: number;
  readonly fileName: string;
  readonly child: ChildProcess;
  readonly stdout: Readable;
  readonly stderr: Readable;
  readonly stdin: Writable;
  /** Started with KeepStdinOpen. */
  readonly keepStdin: boolean;
  /** Started with KeepStdinOpen and not yet closed by a WriteStdin. */
  stdinOpen: boolean;
  /** Serializes WriteStdin calls so bytes keep their order. */
  stdinChain: Promise<void>;
  stdinError: Error | null;
  begun: boolean;
  exit: ExitInfo | null;
  pumpsLeft: number;
  finalized: boolean;
  readonly done: Promise<void>;
  resolveDone: () => void;
  /** Timers: pipe grace after exit, SIGKILL escalation. */
  pipeTimer: NodeJS.Timeout | null;
  killTimer: NodeJS.Timeout | null;
  killTree: boolean;
  /** For the pipe grace: when the grace started, and time spent waiting on the sink. */
  graceStart: number;
  blockedAtGraceStart: number;
  blockedPumps: number;
  blockedSince: number;
  blockedTotal: number;
  /** Keeps Node from draining unread pipes when the child exits before begin(). */
  readonly hold: () => void;
  /** Its start was canceled before the Response went out: killed, and no event is ever sent. */
  silent: boolean;
}

/** A fresh record for a child that has just spawned (its pid is real). */
export function newProc(token: number, fileName: string, child: ChildProcess, keepStdin: boolean): Proc {
  const { stdin, stdout, stderr } = child;
  /* c8 ignore next */
  if (!stdin || !stdout || !stderr || child.pid === undefined)
    throw new HostError('Internal', 'spawned process has no pipes');
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  return {
    token,
    pid: child.pid,
    fileName,
    child,
    stdin,
    stdout,
    stderr,
    keepStdin,
    stdinOpen: keepStdin,
    stdinChain: Promise.resolve(),
    stdinError: null,
    begun: false,
    exit: null,
    pumpsLeft: 2,
    finalized: false,
    done,
    resolveDone,
    pipeTimer: null,
    killTimer: null,
    killTree: false,
    graceStart: 0,
    blockedAtGraceStart: 0,
    blockedPumps: 0,
    blockedSince: 0,
    blockedTotal: 0,
    hold: () => {},
    silent: false,
  };
}

/** Writes `data` to the child's stdin (then ends it when `close`); resolves once it is in the pipe. */
export function writeAndMaybeEnd(proc: Proc, data: Uint8Array, close: boolean): Promise<void> {
  const stdin = proc.stdin;
  const closedError = () =>
    new HostError(
      'IOError',
      proc.stdinError
        ? `stdin of process ${proc.token} failed: ${proc.stdinError.message}`
        : `stdin of process ${proc.token} is closed (the process exited or closed it)`,
    );
  if (stdin.destroyed || stdin.writableEnded || proc.stdinError) return Promise.reject(closedError());
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown) => {
      if (settled) return;
      settled = true;
      stdin.off('close', onClose);
      if (err) reject(closedError());
      else resolve();
    };
    const onClose = () => settle(proc.stdinError ?? new Error('closed'));
    stdin.once('close', onClose);
    const afterWrite = (err?: Error | null) => {
      if (err) return settle(err);
      // Closing needs no flush: the bytes before it are already in the pipe.
      if (close) stdin.end();
      settle(null);
    };
    if (data.length > 0) stdin.write(data, afterWrite);
    else afterWrite(null);
  });
}
