/**
 * What the agent tells its observers (metrics, the audit log, the status
 * counters). One interface, filled by the agent, the listener and the
 * product router; every method is optional and called only when some
 * observer is configured, so an agent without metrics or audit pays for a
 * null check per event and nothing per request.
 */
import {
  decodeReply,
  type ProductCommand,
  type ProductType,
  peekReply,
  ReplyCode,
} from '../protocol/index.js';
import type { Session } from './sessions.js';

/** What a socket says of its traffic (bytes on the wire, TLS and AES framing included). */
export interface ByteCounts {
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** The end of one product request: the final reply message (Response or Error), or null when its host died. */
export type RequestDone = (reply: Buffer | null) => void;

export interface AgentObserver {
  /** A TCP connection was accepted (and passed AllowedAddresses); its raw socket counts the bytes. */
  connectionOpened?(socket: ByteCounts): void;
  /** That connection closed. */
  connectionClosed?(socket: ByteCounts): void;
  /** A connection was refused or closed before its first valid frame; `reason` is a short stable word. */
  rejected?(reason: string): void;
  sessionStarted?(session: Session): void;
  sessionEnded?(session: Session, reason: string): void;
  hostStarted?(agentType: ProductType): void;
  hostEnded?(agentType: ProductType, crashed: boolean): void;
  /**
   * A product request is forwarded to its host (Cancel excluded). Returns
   * what to call when it ends, or undefined when the observer does not care.
   */
  request?(session: Session, name: ProductCommand, data: Buffer): RequestDone | undefined;
}

/** Fans events out to several observers; undefined when there are none. */
export function combineObservers(
  list: readonly (AgentObserver | null | undefined)[],
): AgentObserver | undefined {
  const all = list.filter((o): o is AgentObserver => o != null);
  if (all.length === 0) return undefined;
  if (all.length === 1) return all[0];
  const each =
    <K extends Exclude<keyof AgentObserver, 'request'>>(k: K) =>
    (...args: Parameters<NonNullable<AgentObserver[K]>>) => {
      for (const o of all) (o[k] as ((...a: unknown[]) => void) | undefined)?.(...args);
    };
  return {
    connectionOpened: each('connectionOpened'),
    connectionClosed: each('connectionClosed'),
    rejected: each('rejected'),
    sessionStarted: each('sessionStarted'),
    sessionEnded: each('sessionEnded'),
    hostStarted: each('hostStarted'),
    hostEnded: each('hostEnded'),
    request(session, name, data) {
      const dones: RequestDone[] = [];
      for (const o of all) {
        const d = o.request?.(session, name, data);
        if (d) dones.push(d);
      }
      if (dones.length === 0) return undefined;
      return (reply) => {
        for (const d of dones) d(reply);
      };
    },
  };
}

/** Rejections since start, by reason (for `outpost status`); always on, a Map increment per rejection. */
export class RejectionCounts implements AgentObserver {
  readonly counts = new Map<string, number>();
  rejected(reason: string): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }
}

/** Outcome word of a final reply: 'ok', the error kind, or 'host-crashed' (null: the host died). */
export function replyOutcome(reply: Buffer | null): string {
  if (reply === null) return 'HostCrashed';
  try {
    if (peekReply(reply).command === ReplyCode.Response) return 'ok';
    const r = decodeReply(reply);
    return r.kind === 'error' ? r.errorKind : r.kind;
  } catch {
    return 'unknown';
  }
}
