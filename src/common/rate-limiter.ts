import type { Clock } from './clock.js';

/**
 * A token bucket per key (an agent ID, a source address, a uid): `rate` tokens per second, at most `burst` saved up.
 * Keeps one misbehaving caller from monopolising a shared resource without slowing well-behaved ones; idle buckets
 * are forgotten.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {}

  /**
   * Takes `cost` tokens if available; returns how many ms to wait otherwise (0 = allowed). A cost above the burst
   * empties a full bucket instead of waiting forever for more tokens than the bucket holds.
   */
  take(key: string, cost = 1): number {
    cost = Math.min(cost, this.burst);
    const now = this.clock.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    this.buckets.set(key, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      if (this.buckets.size > 100_000) this.prune(now);
      return 0;
    }
    return Math.ceil(((cost - b.tokens) / this.rate) * 1000);
  }

  /** Gives back tokens taken for a request that was refused elsewhere. */
  refund(key: string, cost: number): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.burst, b.tokens + cost);
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
  }
}
