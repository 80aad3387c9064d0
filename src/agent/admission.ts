/**
 * Admission of connections into the handshake (Listener/MaxConcurrentHandshakes).
 *
 * At most `max` handshakes run at once. A connection that arrives when all
 * slots are taken:
 *
 *   1. evicts the oldest running handshake that has been running for at least
 *      `graceMs` (a stalled one: a good client finishes well within that), and
 *      starts at once; otherwise
 *   2. waits, unread, in a FIFO of at most `max` entries — it starts when a
 *      slot frees or when the oldest running handshake passes `graceMs` and
 *      is evicted in its favour; otherwise
 *   3. is refused (the caller closes it).
 *
 * So stalled handshakes (a slowloris, a port scanner) can hold a slot for
 * `graceMs` at most once others are waiting, and a good client is delayed by
 * at most about `graceMs`, however many stalled connections there are, as
 * long as fewer than `max` new connections arrive per `graceMs`. A burst of
 * good clients queues briefly instead of evicting one another. Every
 * connection, waiting or running, is still bounded by HandshakeTimeout
 * (enforced by the caller, from the moment of accept).
 */

export interface AdmissionTicket {
  readonly state: 'waiting' | 'active' | 'done';
}

interface Ticket extends AdmissionTicket {
  state: 'waiting' | 'active' | 'done';
  startedAt: number;
  readonly start: () => void;
  readonly evict: () => void;
}

export interface HandshakeAdmissionOptions {
  max: number;
  graceMs: number;
}

export class HandshakeAdmission {
  private readonly active = new Set<Ticket>(); // insertion order = start order
  private readonly waiting = new Set<Ticket>(); // FIFO
  private timer: NodeJS.Timeout | null = null;
  private readonly max: number;
  private readonly graceMs: number;
  /** Counters, for logs and tests. */
  evicted = 0;
  refused = 0;

  constructor(options: HandshakeAdmissionOptions) {
    this.max = options.max;
    this.graceMs = options.graceMs;
  }

  get activeCount(): number {
    return this.active.size;
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  /**
   * Asks to start a handshake. `start` runs now or later; `evict` runs if the
   * running handshake is evicted (the caller then closes the connection).
   * Returns null if refused (the caller closes the connection).
   */
  admit(start: () => void, evict: () => void): AdmissionTicket | null {
    const ticket: Ticket = { state: 'waiting', startedAt: 0, start, evict };
    if (this.active.size < this.max || this.evictStalled()) {
      this.activate(ticket);
      return ticket;
    }
    if (this.waiting.size >= this.max) {
      this.refused++;
      return null;
    }
    this.waiting.add(ticket);
    this.schedule();
    return ticket;
  }

  /** The handshake finished (either way) or the connection went away. */
  done(ticket: AdmissionTicket): void {
    const t = ticket as Ticket;
    if (t.state === 'done') return;
    const wasActive = t.state === 'active';
    t.state = 'done';
    this.active.delete(t);
    this.waiting.delete(t);
    if (wasActive) this.pump();
  }

  /** Forgets everything (shutdown). */
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const t of this.active) t.state = 'done';
    for (const t of this.waiting) t.state = 'done';
    this.active.clear();
    this.waiting.clear();
  }

  private activate(t: Ticket): void {
    t.state = 'active';
    t.startedAt = performance.now();
    this.active.add(t);
    t.start();
  }

  /** Evicts the oldest running handshake if it has run for at least graceMs. */
  private evictStalled(): boolean {
    const oldest = this.active.values().next().value as Ticket | undefined;
    if (!oldest || performance.now() - oldest.startedAt < this.graceMs) return false;
    oldest.state = 'done';
    this.active.delete(oldest);
    this.evicted++;
    oldest.evict();
    return true;
  }

  private pump(): void {
    while (this.waiting.size > 0 && (this.active.size < this.max || this.evictStalled())) {
      const next = this.waiting.values().next().value as Ticket;
      this.waiting.delete(next);
      this.activate(next);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.waiting.size === 0) return;
    const oldest = this.active.values().next().value as Ticket | undefined;
    const wait = oldest ? Math.max(0, oldest.startedAt + this.graceMs - performance.now()) : 0;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.ceil(wait) + 1);
    this.timer.unref();
  }
}
