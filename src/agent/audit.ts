/**
 * The audit log (`<AuditLogFile>`, docs/OPERATIONS.md): one JSON line per
 * file mutation, process start, process termination and job, and per session
 * start and end, appended to a file opened with O_APPEND (never rewritten,
 * never truncated by the agent; rotate it with logrotate's `copytruncate`
 * off and a SIGHUP-free `create`, or leave it growing):
 *
 *   {"time":"…","event":"request","session":123,"principal":"aes:0123456789abcdef",
 *    "remote":"10.0.0.5","command":"WriteAllBytes","paths":["/srv/app/a.txt"],
 *    "bytes":12,"outcome":"ok","durationMs":1.8}
 *
 * `principal` is the session's (a 16-hex-digit SHA-256 fingerprint of the
 * AES key, or the client's address): never a key. File contents, process
 * arguments, environment values, stdin and job payloads are never written —
 * only their sizes, counts and variable names. `remote` is the address that
 * created the session.
 *
 * Cheap by design (issue 19 optimises the forwarding path): only the
 * commands in AUDITED are decoded at all, and only for their path
 * arguments; everything else costs one table look-up. Lines are written with
 * one synchronous append each (a few microseconds on a local disk): the
 * order is the order of events, nothing queues in memory, and a line is in
 * the file before the reply reaches the client.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  decodeProductArgs,
  decodeReply,
  decodeResult,
  FileAccess,
  FileMode,
  type ProductCommand,
  peekReply,
  ReplyCode,
  type RequestOf,
} from '../protocol/index.js';
import { type AgentObserver, type RequestDone, replyOutcome } from './observe.js';
import type { Session } from './sessions.js';

type Fields = Record<string, unknown>;
type Describe<N extends ProductCommand> = (args: RequestOf<N>) => Fields | null;

const path1 = (a: { path: string }): Fields => ({ paths: [a.path] });

/** What each audited command records; null from a describer: not a mutation (e.g. a read-only OpenFile). */
const AUDITED: { [N in ProductCommand]?: Describe<N> } = {
  CreateDirectory: path1,
  DeleteFile: path1,
  DeleteDirectory: (a) => ({ paths: [a.path], recursive: a.recursive }),
  ClearDirectory: path1,
  Move: (a) => ({ paths: [a.source, a.target], overwrite: a.overwrite }),
  CopyFile: (a) => ({ paths: [a.source, a.target], overwrite: a.overwrite }),
  WriteAllBytes: (a) => ({ paths: [a.path], bytes: a.contents.length }),
  OpenFile: (a) =>
    a.access === FileAccess.Read && a.fileMode === FileMode.Open
      ? null
      : { paths: [a.path], fileMode: a.fileMode, access: a.access },
  SetLastWriteTime: path1,
  SetMode: (a) => ({ paths: [a.path], mode: a.mode }),
  DeleteFiles: (a) => ({ paths: a.paths }),
  StartProcess: (a) => ({
    fileName: a.fileName,
    workingDirectory: a.workingDirectory,
    argumentCount: a.args.length,
    environmentNames: Object.keys(a.environment),
  }),
  TerminateProcess: (a) => ({ processToken: a.processToken, entireTree: a.entireTree }),
  ExecuteJob: (a) => ({ jobType: a.jobType, payloadBytes: a.payload.length }),
};

export class AuditLog implements AgentObserver {
  private fd: number | null;

  /** Opens (creates, mode 0600) `file` for appending; throws an Error naming AuditLogFile. */
  constructor(readonly file: string) {
    try {
      mkdirSync(dirname(file), { recursive: true });
      this.fd = openSync(file, 'a', 0o600);
    } catch (err) {
      throw new Error(
        `AuditLogFile: cannot open ${file} for appending (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      );
    }
  }

  private write(record: Fields): void {
    if (this.fd === null) return;
    try {
      writeSync(this.fd, `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
    } catch {
      // A full disk must not take the agent down; the next line tries again.
    }
  }

  private who(session: Session): Fields {
    return { session: session.id, principal: session.principal, remote: session.remote };
  }

  sessionStarted(session: Session): void {
    this.write({ event: 'session-start', ...this.who(session) });
  }

  sessionEnded(session: Session, reason: string): void {
    this.write({
      event: 'session-end',
      ...this.who(session),
      reason,
      durationMs: Date.now() - session.createdAt,
    });
  }

  request(session: Session, name: ProductCommand, data: Buffer): RequestDone | undefined {
    const describe = AUDITED[name] as Describe<ProductCommand> | undefined;
    if (!describe) return undefined;
    let fields: Fields | null;
    try {
      fields = describe(decodeProductArgs(name, data) as RequestOf<ProductCommand>);
    } catch {
      return undefined; // arguments that do not decode: the host answers InvalidArgument, nothing changed
    }
    if (fields === null) return undefined;
    const t0 = process.hrtime.bigint();
    const record = fields;
    return (reply) => {
      const extra: Fields = {};
      if (name === 'StartProcess' && reply !== null && peekReply(reply).command === ReplyCode.Response) {
        try {
          // The pid, for matching with the system's process accounting.
          const r = decodeReply(reply);
          if (r.kind === 'response') extra.pid = decodeResult('StartProcess', r.body).osProcessId;
        } catch {
          // no pid
        }
      }
      this.write({
        event: 'request',
        ...this.who(session),
        command: name,
        ...record,
        ...extra,
        outcome: replyOutcome(reply),
        durationMs: Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100,
      });
    };
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
