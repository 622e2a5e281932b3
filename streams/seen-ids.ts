/**
 * Which event ids a replay has seen, for any number of events: the 64-bit hashes of the event ids added so far, in an open-addressing table (linear probing)
 * on two Uint32Arrays, grown at load 0.5: 16-32 bytes per id, where a Set of the id strings took
 * over 100 and stops at 2^24 (16.7M) entries. What a replay that applies each event once keeps
 * (training/steps.ts `readPurchases` through evaluation/purchase-log.ts, training/rows.ts): a full
 * H&M replay holds 31.8M ids.
 *
 * Two distinct ids with the same 64-bit hash count as one: the second event is dropped as a
 * duplicate. Treating the hash as random, the chance that this happens at all among n distinct
 * ids is at most n(n-1)/2 / 2^64, about n²/2^65: ~3e-5 for H&M's 31.8M purchases.
 */
export class SeenEventIds {
  private high = new Uint32Array(2048);
  private low = new Uint32Array(2048);
  private count = 0;

  /** Adds the id's hash; false when it was there already. */
  add(id: string): boolean {
    // Two different 32-bit hashes over the id's UTF-16 code units (FNV-1a and MurmurHash3's
    // block step), each finished with MurmurHash3's fmix32: any string works, not only hex ids.
    let a = 0x811c9dc5;
    let b = id.length;
    for (let i = 0; i < id.length; i++) {
      const ch = id.charCodeAt(i);
      a = Math.imul(a ^ ch, 0x01000193);
      let k = Math.imul(ch, 0xcc9e2d51);
      k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
      b ^= k;
      b = (Math.imul((b << 13) | (b >>> 19), 5) + 0xe6546b64) | 0;
    }
    const hi = fmix32(a);
    let lo = fmix32(b);
    // (0, 0) marks an empty slot.
    if (hi === 0 && lo === 0) lo = 1;
    if (2 * (this.count + 1) > this.low.length) this.grow();
    const mask = this.low.length - 1;
    for (let s = lo & mask; ; s = (s + 1) & mask) {
      const l = this.low[s] as number;
      const h = this.high[s] as number;
      if (l === lo && h === hi) return false;
      if (l === 0 && h === 0) {
        this.low[s] = lo;
        this.high[s] = hi;
        this.count++;
        return true;
      }
    }
  }

  private grow(): void {
    const { low, high } = this;
    this.low = new Uint32Array(2 * low.length);
    this.high = new Uint32Array(2 * high.length);
    const mask = this.low.length - 1;
    for (let i = 0; i < low.length; i++) {
      const lo = low[i] as number;
      const hi = high[i] as number;
      if (lo === 0 && hi === 0) continue;
      let s = lo & mask;
      while ((this.low[s] as number) !== 0 || (this.high[s] as number) !== 0) s = (s + 1) & mask;
      this.low[s] = lo;
      this.high[s] = hi;
    }
  }
}

/** MurmurHash3's 32-bit finaliser, as an unsigned value. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
