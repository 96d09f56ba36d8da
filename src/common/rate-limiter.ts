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

  /** The most tokens a bucket holds: a cost above it can never be taken (callers refuse such a request outright). */
  get capacity(): number {
    return this.burst;
  }

  /** Takes `cost` tokens if available; returns how many ms to wait otherwise (0 = allowed). */
  take(key: string, cost = 1): number {
    const now = this.clock.now();
    const b = this.refill(key, now);
    this.buckets.set(key, b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      if (this.buckets.size > 100_000) this.prune(now);
      return 0;
    }
    return Math.ceil(((cost - b.tokens) / this.rate) * 1000);
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

  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
  }
}
