/**
 * The AES replay cache (PROTOCOL.md §3): the agent remembers every accepted
 * frame of the last `capacity` frames, across all connections of the
 * process, and refuses a frame it has seen.
 *
 * What is remembered is a 64-bit digest of the frame's ciphertext after its
 * first block. The digest is taken from the frame's last cipher block and
 * its length: in CBC each cipher block is the encryption of its plaintext
 * XOR the block before it, so the last block is a keyed function of the
 * whole frame (the IV included, which is random per frame), and two honest
 * frames share it with a probability of 2^-64 per pair after truncation.
 * A replayed frame — with its first block altered or not — has the same
 * bytes after the first block and so the same last block. This costs
 * nothing per byte, where hashing a 1 MiB frame with SHA-256 costs about a
 * millisecond here (docs/PROTOCOL.md, "Replay cache").
 *
 * Memory: an open-addressing table of 2^21 64-bit slots (one Uint32Array,
 * the two words of a slot side by side, 16 MiB) with linear probing and
 * backward-shift deletion, and a ring of the last `capacity` digests (8 MiB
 * for 1,000,000) that says which to forget. The arrays are zero pages until written, so an agent that never
 * sees an AES frame does not pay for them.
 */

/** Frames remembered by default (the contract's minimum). */
export const REPLAY_CACHE_CAPACITY = 1_000_000;

export class ReplayCache {
  readonly capacity: number;
  private readonly mask: number;
  /** Slot i holds its digest at [2i] (high word) and [2i+1]: one cache line for both. */
  private readonly table: Uint32Array;
  /** The digests in arrival order, interleaved the same way. */
  private readonly ring: Uint32Array;
  private head = 0;
  private count = 0;
  /** Frames refused as replays since start. */
  hits = 0;

  constructor(capacity = REPLAY_CACHE_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('capacity must be a positive integer');
    this.capacity = capacity;
    // At most half full: probes stay short.
    let slots = 1;
    while (slots < capacity * 2) slots *= 2;
    this.mask = slots - 1;
    this.table = new Uint32Array(slots * 2);
    this.ring = new Uint32Array(capacity * 2);
  }

  /** Digests remembered now. */
  get size(): number {
    return this.count;
  }

  /**
   * Remembers the frame whose ciphertext is `ciphertext` (the whole body, at
   * least two blocks). Returns false, remembering nothing, when it was seen.
   */
  add(ciphertext: Uint8Array): boolean {
    return this.addLastBlock(ciphertext.subarray(ciphertext.length - 16), ciphertext.length);
  }

  /** `add()` for a frame given by its last cipher block and its ciphertext length (a frame read in pieces). */
  addLastBlock(lastBlock: Uint8Array, n: number): boolean {
    if (lastBlock.length !== 16) throw new RangeError('the last cipher block is 16 bytes');
    const view = new DataView(lastBlock.buffer, lastBlock.byteOffset, 16);
    // 128 bits of the last block folded to 64, with the length mixed in.
    // Multiplying by an odd constant is a bijection of 32-bit words, so a
    // block that differs in one word never folds to the same digest.
    const h = (view.getUint32(0, true) ^ Math.imul(view.getUint32(12, true), 0xcc9e2d51)) >>> 0;
    let l =
      (view.getUint32(4, true) ^
        Math.imul(view.getUint32(8, true), 0x1b873593) ^
        Math.imul(n, 0x9e3779b1)) >>>
      0;
    if (h === 0 && l === 0) l = 1; // 0/0 marks an empty slot
    if (this.find(h, l) >= 0) {
      this.hits++;
      return false;
    }
    if (this.count === this.capacity) {
      const oldest = (this.head + this.capacity - this.count) % this.capacity;
      this.remove(this.ring[2 * oldest]!, this.ring[2 * oldest + 1]!);
      this.count--;
    }
    this.insert(h, l);
    this.ring[2 * this.head] = h;
    this.ring[2 * this.head + 1] = l;
    this.head = (this.head + 1) % this.capacity;
    this.count++;
    return true;
  }

  private slotOf(h: number, l: number): number {
    return (Math.imul(l ^ Math.imul(h, 0x85ebca6b), 0xc2b2ae35) >>> 0) & this.mask;
  }

  private find(h: number, l: number): number {
    for (let i = this.slotOf(h, l); ; i = (i + 1) & this.mask) {
      const sh = this.table[2 * i]!;
      const sl = this.table[2 * i + 1]!;
      if (sh === 0 && sl === 0) return -1;
      if (sh === h && sl === l) return i;
    }
  }

  private insert(h: number, l: number): void {
    let i = this.slotOf(h, l);
    while (this.table[2 * i] !== 0 || this.table[2 * i + 1] !== 0) i = (i + 1) & this.mask;
    this.table[2 * i] = h;
    this.table[2 * i + 1] = l;
  }

  /** Backward-shift deletion keeps every probe chain unbroken without tombstones. */
  private remove(h: number, l: number): void {
    let i = this.find(h, l);
    if (i < 0) return;
    for (;;) {
      this.table[2 * i] = 0;
      this.table[2 * i + 1] = 0;
      let j = i;
      for (;;) {
        j = (j + 1) & this.mask;
        const jh = this.table[2 * j]!;
        const jl = this.table[2 * j + 1]!;
        if (jh === 0 && jl === 0) return;
        const home = this.slotOf(jh, jl);
        // Move j back to i when its home is not cyclically within (i, j].
        const inRange = i <= j ? home > i && home <= j : home > i || home <= j;
        if (!inRange) {
          this.table[2 * i] = jh;
          this.table[2 * i + 1] = jl;
          i = j;
          break;
        }
      }
    }
  }
}
