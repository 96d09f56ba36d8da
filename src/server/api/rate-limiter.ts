import type { Clock } from '../../common/clock.js';

/**
 * A token bucket per key (agent ID): `rate` tokens per second, at most `burst` saved up. Protects the CA from a
 * misbehaving host without slowing well-behaved ones; idle buckets are forgotten.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {}

  /** Takes `cost` tokens if available; returns how many ms to wait otherwise (0 = allowed). */
  take(key: string, cost = 1): number {
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

/**
 * Signing admission: a budget per agent (a misbehaving host cannot starve the others) and one for the whole server
 * (a reconnect storm after a CA rotation cannot monopolise the CA). Refusals are UNAVAILABLE with a retry hint, so
 * agents back off with jitter and try again.
 */
export class SigningLimits {
  constructor(
    private readonly perAgent: RateLimiter,
    private readonly global: RateLimiter,
  ) {}

  /** Returns 0 when admitted, otherwise how many ms to wait; nothing is consumed on refusal. */
  admit(agentId: string, cost: number): number {
    const globalWait = this.global.take('*', cost);
    if (globalWait > 0) return globalWait;
    const agentWait = this.perAgent.take(agentId, cost);
    if (agentWait > 0) this.global.refund('*', cost);
    return agentWait;
  }
}
