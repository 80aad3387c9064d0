/**
 * The handshake caps (PROTOCOL.md §6): Listener/MaxConcurrentHandshakes over
 * all addresses and Listener/MaxHandshakesPerAddress per remote address,
 * counted for *unfinished* connections — from the accept until the
 * connection's first valid frame (in mode aes that is when the key is
 * proven; in mode ssl the TLS handshake is part of it).
 *
 * A newcomer is always admitted; room is made by closing someone else:
 *
 *   1. over its address's cap → that address's oldest unfinished handshake;
 *   2. over the global cap → the oldest unfinished handshake of the address
 *      that has the most (ties: the one whose oldest is oldest).
 *
 * So a flood of stalled handshakes, from one address or from many, only
 * ever closes its own connections first, and a good client from another
 * address gets in on its first try. Every unfinished handshake is also
 * bounded by HandshakeTimeout (the listener's clock, from the accept).
 * Outbound links (§8) never come through here: they are exempt.
 */

/** One unfinished connection, as the caps see it. */
export interface AdmissionTicket {
  readonly address: string;
  /** True once finished, closed or evicted. */
  readonly done: boolean;
}

interface Ticket extends AdmissionTicket {
  done: boolean;
  readonly evict: () => void;
}

export interface HandshakeCapsOptions {
  /** MaxConcurrentHandshakes. */
  maxTotal: number;
  /** MaxHandshakesPerAddress. */
  maxPerAddress: number;
}

export class HandshakeCaps {
  /** Unfinished tickets by address, each set in arrival order. */
  private readonly byAddress = new Map<string, Set<Ticket>>();
  private total = 0;
  private maxTotal: number;
  private maxPerAddress: number;
  /** Handshakes closed to make room (for logs and tests). */
  evicted = 0;

  constructor(options: HandshakeCapsOptions) {
    this.maxTotal = Math.max(1, options.maxTotal);
    this.maxPerAddress = Math.max(1, options.maxPerAddress);
  }

  /** New caps (reload): they apply from the next admission; nobody is evicted for them. */
  setLimits(options: HandshakeCapsOptions): void {
    this.maxTotal = Math.max(1, options.maxTotal);
    this.maxPerAddress = Math.max(1, options.maxPerAddress);
  }

  /** Unfinished handshakes now. */
  get count(): number {
    return this.total;
  }

  /** Unfinished handshakes from `address` now. */
  countOf(address: string): number {
    return this.byAddress.get(address)?.size ?? 0;
  }

  /**
   * Counts a new connection from `address`, closing others (their `evict`)
   * to keep within both caps. `evict` is called at most once, synchronously,
   * when this ticket is chosen to make room.
   */
  admit(address: string, evict: () => void): AdmissionTicket {
    let own = this.byAddress.get(address);
    if (own && own.size >= this.maxPerAddress) this.evictOldest(own);
    if (this.total >= this.maxTotal) {
      const busiest = this.busiestAddress();
      if (busiest) this.evictOldest(busiest);
    }
    const ticket: Ticket = { address, done: false, evict };
    own = this.byAddress.get(address);
    if (!own) {
      own = new Set();
      this.byAddress.set(address, own);
    }
    own.add(ticket);
    this.total++;
    return ticket;
  }

  /** The connection finished its handshake (first valid frame) or went away. */
  release(ticket: AdmissionTicket): void {
    const t = ticket as Ticket;
    if (t.done) return;
    t.done = true;
    const set = this.byAddress.get(t.address);
    if (!set?.delete(t)) return;
    this.total--;
    if (set.size === 0) this.byAddress.delete(t.address);
  }

  /** Forgets everything (shutdown); nobody is evicted. */
  clear(): void {
    for (const set of this.byAddress.values()) for (const t of set) t.done = true;
    this.byAddress.clear();
    this.total = 0;
  }

  private evictOldest(set: Set<Ticket>): void {
    const oldest = set.values().next().value as Ticket | undefined;
    if (!oldest) return;
    this.release(oldest);
    this.evicted++;
    oldest.evict();
  }

  /** The tickets of the address with the most unfinished handshakes. */
  private busiestAddress(): Set<Ticket> | undefined {
    let best: Set<Ticket> | undefined;
    for (const set of this.byAddress.values()) if (!best || set.size > best.size) best = set;
    // Map order is first-arrival order, so ties go to the address seen first
    // (whose oldest handshake is then the oldest among them, or close to it).
    return best;
  }
}
