import type { KeyObject } from 'node:crypto';
import type { RateLimiter } from '../../common/rate-limiter.js';

/**
 * Signing admission: a budget per agent (a misbehaving host cannot starve the others) and one for the whole server
 * (a reconnect storm after a CA rotation cannot monopolise the CA). Refusals are UNAVAILABLE with a retry hint, so
 * agents back off with jitter and try again.
 *
 * The budgets count P-256 CSRs, what meshid agents send. A CSR is charged one token before it is parsed (so a flood
 * is refused for nothing), and what its key type costs beyond that once the key is known, before the signature check.
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

  /**
   * Charges the keys' cost beyond the one token each that admit took for them; when that is refused, gives those
   * tokens back too (the request is refused whole) and returns how many ms to wait.
   */
  admitKeys(agentId: string, keys: readonly KeyObject[]): number {
    const extra = keys.reduce((sum, key) => sum + csrCost(key) - 1, 0);
    if (extra === 0) return 0;
    const wait = this.admit(agentId, extra);
    if (wait > 0) this.refund(agentId, keys.length);
    return wait;
  }

  refund(agentId: string, cost: number): void {
    this.global.refund('*', cost);
    this.perAgent.refund(agentId, cost);
  }
}

/**
 * What checking and signing a CSR of this key costs the server, in P-256 CSRs. Measured on the CI machine's
 * class of CPU (OpenSSL 3, node:crypto): a P-256 CSR costs ~120 µs on the whole path, ~47 µs of it verifying; a
 * P-384 verification alone takes ~480 µs; RSA verifications take 17 µs (2048 bits) to 51 µs (4096 bits).
 */
export function csrCost(key: KeyObject): number {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 5 : 1;
}
