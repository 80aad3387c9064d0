/**
 * Where the agent's host processes come from, and how many there may be
 * (issue 18, item 2; docs/ARCHITECTURE.md, "Warm spare hosts" and "Idle
 * hosts").
 *
 * Spare. One host is kept started ahead of need, so a session's first
 * product request does not wait for a Node process to boot. A spare is
 * started when a session's host ends (so the next session finds one ready)
 * and retired after `spareIdleMs` (default 5 minutes) without being taken,
 * so an agent nobody uses goes back to its idle size. Never at agent start,
 * never when a client merely connects (idle connections cost no host), never
 * right after a spare is taken (not beside a session at work), and never
 * when a host was stopped for being idle (the agent is shrinking then).
 *
 * Idle hosts. A session tells the pool when one of its hosts holds nothing
 * (no request in flight, no process or job, no open handle) and how to stop
 * it; the pool stops it after `idleMs`, or sooner to make room.
 *
 * Bound. At most `maxHosts` host processes count at once, the spare
 * included; a host stops counting when it exits or is asked to stop. A host
 * that is needed at the bound takes the spare if there is one, else the
 * longest-idle host is stopped to make room; when every host is busy,
 * `take()` throws `HostLimitError` — a busy host is never stopped for room.
 */
import type { HostSettings } from '../protocol/index.js';
import { type HostHandlers, HostProcess, type HostProcessOptions } from './host-process.js';

/** How long after a session's host ends the next spare starts booting (ms). */
export const SPARE_REFILL_DELAY_MS = 1000;

/** Sessions one host process serves at most (recycled as the spare in between). */
export const MAX_HOST_SESSIONS = 100;

/** How long an untaken spare host lives (ms). */
export const DEFAULT_SPARE_IDLE_MS = 5 * 60_000;
/** How long a session's host that holds nothing lives (ms): HostIdleTimeout. */
export const DEFAULT_HOST_IDLE_MS = 60_000;
/** Host processes at once, spares included: MaxHostProcesses. */
export const DEFAULT_MAX_HOSTS = 64;

export interface HostPoolOptions extends Omit<HostProcessOptions, 'settings' | 'onMessage' | 'onExit'> {
  /** Warm spares (0 or 1; default 1). */
  spares?: number;
  spareIdleMs?: number;
  /** A session's host that holds nothing is stopped after this (ms). */
  idleMs?: number;
  /** Host processes at once, the spare included. */
  maxHosts?: number;
}

/** Every host is busy and the bound is reached: no host for this request now. */
export class HostLimitError extends Error {
  override readonly name = 'HostLimitError';
}

interface IdleEntry {
  readonly timer: NodeJS.Timeout;
  readonly stop: () => void;
}

export class HostPool {
  private spare: HostProcess | null = null;
  private spareTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Hosts alive and not asked to stop: what the bound counts. */
  private readonly counted = new Set<HostProcess>();
  /** Session hosts that hold nothing, longest idle first (Map keeps insertion order). */
  private readonly idle = new Map<HostProcess, IdleEntry>();
  /** Hosts stopped for being idle: their end starts no spare. */
  private readonly stoppedIdle = new WeakSet<HostProcess>();
  private readonly hostOptions: Omit<HostProcessOptions, 'settings' | 'onMessage' | 'onExit'>;
  private readonly spares: number;
  private readonly spareIdleMs: number;
  private idleMs: number;
  maxHosts: number;

  constructor(opts: HostPoolOptions) {
    const { spares, spareIdleMs, idleMs, maxHosts, ...hostOptions } = opts;
    this.hostOptions = hostOptions;
    this.spares = spares ?? 1;
    this.spareIdleMs = spareIdleMs ?? DEFAULT_SPARE_IDLE_MS;
    this.idleMs = idleMs ?? DEFAULT_HOST_IDLE_MS;
    this.maxHosts = maxHosts ?? DEFAULT_MAX_HOSTS;
  }

  /**
   * Reload: HostIdleTimeout applies to hosts that become idle from now on,
   * MaxHostProcesses to the next host started (none is stopped for it).
   */
  setLimits(idleMs: number, maxHosts: number): void {
    this.idleMs = idleMs;
    this.maxHosts = maxHosts;
  }

  /** True while a spare host is up (or booting) and unassigned. */
  get hasSpare(): boolean {
    return !!this.spare?.alive && !this.spare.isAssigned;
  }

  /** Host processes that count against the bound now (spare included). */
  get size(): number {
    return this.counted.size;
  }

  /**
   * A host for a session: the warm spare when there is one, else a new one
   * (an idle host stopped first if the bound is reached).
   * @throws HostLimitError when the bound is reached and no host is idle.
   */
  take(settings: HostSettings, handlers: HostHandlers): HostProcess {
    let host = this.spare;
    this.spare = null;
    this.clearSpareTimer();
    if (!host?.alive || host.isAssigned) {
      this.makeRoom();
      host = this.spawn();
    }
    const taken = host;
    // The next spare starts when this host ends, not now: a session at work
    // (a 1 GiB transfer) should not share the machine with a second idle
    // Node process booting beside it.
    taken.assign(settings, {
      ...handlers,
      onExit: (reason) => {
        this.forget(taken);
        handlers.onExit(reason);
        // A second later, not at once: a fan-out's sessions end together, and 50 spares
        // booting at that moment would slow the commands still running (docs/ARCHITECTURE.md).
        if (this.spares > 0 && !this.closed && !this.stoppedIdle.has(taken))
          setTimeout(() => this.replenish(), SPARE_REFILL_DELAY_MS).unref();
      },
    });
    return taken;
  }

  /**
   * A session's host holds nothing (`stop` ends it, called at most once), or
   * holds something again (`stop` null). Idle hosts are stopped after
   * `idleMs`, or earlier when another host needs their room.
   */
  setIdle(host: HostProcess, stop: (() => void) | null): void {
    if (stop === null) {
      this.clearIdle(host);
      return;
    }
    if (this.idle.has(host) || !host.alive || !this.counted.has(host)) return;
    const timer = setTimeout(() => this.stopIdle(host), this.idleMs);
    timer.unref();
    this.idle.set(host, { timer, stop });
  }

  private stopIdle(host: HostProcess): void {
    const entry = this.idle.get(host);
    if (!entry) return;
    this.clearIdle(host);
    this.counted.delete(host);
    this.stoppedIdle.add(host);
    entry.stop();
  }

  /** At the bound: the longest-idle host goes, else the request is refused. */
  private makeRoom(): void {
    if (this.counted.size < this.maxHosts) return;
    const oldest = this.idle.keys().next();
    if (oldest.done)
      throw new HostLimitError(
        `the agent runs its limit of ${this.maxHosts} host processes (MaxHostProcesses) and every one is busy ` +
          '(open files, running processes or requests); retry when other sessions are done, close sessions ' +
          "that are no longer needed, or raise MaxHostProcesses in the agent's configuration",
      );
    this.stopIdle(oldest.value);
  }

  private spawn(options: Partial<HostProcessOptions> = {}): HostProcess {
    const host = new HostProcess({ ...this.hostOptions, ...options });
    this.counted.add(host);
    return host;
  }

  private forget(host: HostProcess): void {
    this.counted.delete(host);
    this.clearIdle(host);
  }

  /** The host is no longer waiting to be stopped for idleness. */
  private clearIdle(host: HostProcess): void {
    const entry = this.idle.get(host);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.idle.delete(host);
  }

  private replenish(): void {
    if (this.closed || this.hasSpare || this.counted.size >= this.maxHosts) return;
    const spare: HostProcess = this.spawn({ onExit: () => this.spareExited(spare) });
    this.keepAsSpare(spare);
  }

  /**
   * A session has ended (CloseSession, or its detached timeout) and its
   * host goes: `clean` when the host held nothing at the end (no request,
   * process, job or handle). A clean host becomes the spare when there is
   * none — its session's state dropped (HostControl.Recycle), no Node boot
   * for the next session — at most MAX_HOST_SESSIONS times; any other is
   * shut down (and a spare follows, see take()).
   */
  async release(host: HostProcess, clean: boolean): Promise<void> {
    this.clearIdle(host);
    const reuse =
      clean &&
      this.spares > 0 &&
      !this.closed &&
      !this.hasSpare &&
      this.counted.has(host) &&
      host.recycled < MAX_HOST_SESSIONS - 1 &&
      host.recycle({ onMessage: () => {}, onExit: () => this.spareExited(host) });
    if (reuse) {
      this.clearSpareTimer();
      this.keepAsSpare(host);
      return;
    }
    await host.shutdown();
  }

  private spareExited(spare: HostProcess): void {
    this.forget(spare);
    if (this.spare === spare) {
      this.spare = null;
      this.clearSpareTimer();
    }
  }

  private keepAsSpare(spare: HostProcess): void {
    this.spare = spare;
    // An agent nobody uses any more goes back to its idle size.
    this.spareTimer = setTimeout(() => {
      this.spareTimer = null;
      if (this.spare !== spare) return;
      this.spare = null;
      this.counted.delete(spare);
      void spare.shutdown(1000);
    }, this.spareIdleMs);
    this.spareTimer.unref();
  }

  private clearSpareTimer(): void {
    if (this.spareTimer) clearTimeout(this.spareTimer);
    this.spareTimer = null;
  }

  /** Stops the spare and the idle timers (agent shutdown; sessions stop their own hosts). */
  async close(): Promise<void> {
    this.closed = true;
    this.clearSpareTimer();
    for (const e of this.idle.values()) clearTimeout(e.timer);
    this.idle.clear();
    const s = this.spare;
    this.spare = null;
    if (s?.alive) await s.shutdown(1000);
  }
}
