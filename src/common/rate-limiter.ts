import type { Clock } from './clock.js';

/** Buckets held before idle ones are looked for: below it, none are (a few MB at most). */
export const PRUNE_AT_BUCKETS = 100_000;

/**
 * A token bucket per key (an agent ID, a source address, a uid): `rate` tokens per second, at most `burst` saved up.
 * Keeps one misbehaving caller from monopolising a shared resource without slowing well-behaved ones; idle buckets
 * are forgotten.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();
  /**
   * The bucket count at which the next prune scans the map: twice what the last one kept, and at least
   * PRUNE_AT_BUCKETS. A scan of n buckets thus comes only after n/2 new keys, so pruning costs O(1) a take even when
   * most buckets are still in use; scanning whenever the map was over the limit cost a full scan per take (~3 ms at
   * 100,000 buckets, a few hundred takes a second), which a caller with many keys (source addresses) could force.
   */
  private pruneAt = PRUNE_AT_BUCKETS;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {}

  /** The most tokens a bucket holds: a cost above it can never be taken (callers refuse such a request outright). */
  get capacity(): number {
    return this.burst;
  }

  /** Takes `cost` tokens if available; returns how many ms to wait otherwise (0 = allowed). */
  take(key: string, cost = 1): number {
    const now = this.clock.now();
    const b = this.refill(key, now);
    this.buckets.set(key, b);
    const waitMs = b.tokens >= cost ? 0 : Math.ceil(((cost - b.tokens) / this.rate) * 1000);
    if (waitMs === 0) b.tokens -= cost;
    // After the take: a new key's bucket is full until then, and would be pruned with the take lost.
    if (this.buckets.size > this.pruneAt) this.prune(now);
    return waitMs;
  }

  /** How many ms until `cost` tokens are there (0: now), taking nothing. */
  wait(key: string, cost: number): number {
    const b = this.refill(key, this.clock.now());
    return b.tokens >= cost ? 0 : Math.ceil(((cost - b.tokens) / this.rate) * 1000);
  }

  private refill(key: string, now: number): { tokens: number; at: number } {
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    return b;
  }

  /** Gives back tokens taken for a request that was refused elsewhere. */
  refund(key: string, cost: number): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.burst, b.tokens + cost);
  }

  /** How many buckets are held (idle ones included until a prune). */
  get size(): number {
    return this.buckets.size;
  }

  /** Forgets the buckets that are full again: taking from one anew starts from the same burst. */
  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    this.pruneAt = Math.max(PRUNE_AT_BUCKETS, 2 * this.buckets.size);
  }
}
