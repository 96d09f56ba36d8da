import type { RateLimiter } from '../../common/rate-limiter.js';

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
