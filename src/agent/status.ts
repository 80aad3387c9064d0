/**
 * What `outpost status` shows (the control socket's `status` answer, JSON):
 * version, uptime, config path, listener, outbound links, every session,
 * and rejected handshakes by reason since start. Built on demand from the
 * live objects; nothing is kept for it.
 */
import type { Session, SessionRegistry } from './sessions.js';

/** One outbound server's links, as the agent's dialer (outbound.ts) reports them. */
export interface OutboundLinkStatus {
  /** The server as configured (host:port or name). */
  server: string;
  /** e.g. 'connected', 'connecting', 'backing-off'. */
  state: string;
  /** ms since the epoch of the last state change. */
  since?: number;
  [key: string]: unknown;
}

export interface SessionStatus {
  id: number;
  /** `aes:<16 hex of SHA-256 of the key>` or `addr:<ip>`: never the key. */
  principal: string;
  /** The address that created the session, and the addresses attached now. */
  createdBy: string;
  remotes: string[];
  state: 'attached' | 'detached';
  /** ISO time since when it has been in `state`. */
  since: string;
  createdAt: string;
  idleMs: number;
  hosts: { product: string; pid: number | null }[];
  processes: { token: number; pid: number; attached: boolean }[];
  jobs: { token: number; attached: boolean }[];
}

export interface AgentStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeMs: number;
  configPath: string | null;
  listener: { address: string; port: number; mode: string; thumbprint: string | null };
  connections: { open: number; unfinished: number };
  hostProcesses: number;
  outbound: OutboundLinkStatus[];
  sessions: SessionStatus[];
  /** Connections refused or closed before their first valid frame, by reason. */
  rejected: Record<string, number>;
  replayCacheHits: number;
}

export interface SessionDetail {
  hosts: { product: string; pid: number | null }[];
  processes: { token: number; pid: number; attached: boolean }[];
  jobs: { token: number; attached: boolean }[];
}

const iso = (ms: number) => new Date(ms).toISOString();

export function describeSession(s: Session, detail: SessionDetail, now = Date.now()): SessionStatus {
  const remotes: string[] = [];
  for (const c of s.connections) if (c.remote) remotes.push(c.remote);
  const attached = s.connections.size > 0;
  return {
    id: s.id,
    principal: s.principal,
    createdBy: s.remote,
    remotes,
    state: attached ? 'attached' : 'detached',
    since: iso(attached ? (s.attachedSince ?? s.createdAt) : (s.detachedSince ?? s.createdAt)),
    createdAt: iso(s.createdAt),
    idleMs: Math.max(0, now - s.lastActivity),
    hosts: detail.hosts.map((h) => ({ product: h.product, pid: h.pid })),
    processes: detail.processes,
    jobs: detail.jobs,
  };
}

export function describeSessions(
  sessions: SessionRegistry,
  detailOf: (id: number) => SessionDetail,
): SessionStatus[] {
  const now = Date.now();
  return [...sessions].map((s) => describeSession(s, detailOf(s.id), now)).sort((a, b) => a.id - b.id);
}
