import type { KeyObject } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';
import type { RateLimiter } from '../../common/rate-limiter.js';

/**
 * Signing admission: a budget per agent (a misbehaving host cannot starve the others) and one for the whole server
 * (a reconnect storm after a CA rotation cannot monopolise the CA). Refusals are RESOURCE_EXHAUSTED with a retry
 * hint (node-signing.ts), so agents wait that long, with jitter, and try again.
 *
 * The budgets count P-256 CSRs, what meshid agents send. A CSR is charged one token before it is parsed (so a flood
 * is refused for nothing), and what its key type costs beyond that once the key is known, before the signature check.
 */
export class SigningLimits {
  constructor(
    private readonly perAgent: RateLimiter,
    private readonly global: RateLimiter,
  ) {}

  /**
   * Returns 0 when admitted, otherwise how many ms to wait; nothing is consumed on refusal. A cost no bucket can
   * ever hold is refused outright (invalid_argument): waiting would not help.
   */
  admit(agentId: string, cost: number): number {
    if (cost > this.perAgent.capacity) {
      throw invalidArgument(
        `this request costs ${cost} signing tokens, more than an agent's budget holds (agent_sign_burst ${this.perAgent.capacity}; a P-256 CSR costs 1, a P-384 one ${P384_COST}): send fewer CSRs per call`,
      );
    }
    const globalWait = this.global.take('*', cost);
    if (globalWait > 0) return globalWait;
    const agentWait = this.perAgent.take(agentId, cost);
    if (agentWait > 0) this.global.refund('*', cost);
    return agentWait;
  }

  /**
   * Charges the keys' cost beyond the `taken` tokens admit took for the request (one per CSR). When that is refused,
   * gives those back too (the request is refused whole) and returns how long the whole cost waits, so a retry after
   * that time is admitted in one go; a whole cost no bucket can hold is invalid_argument, as in admit.
   */
  admitKeys(agentId: string, keys: readonly KeyObject[], taken: number): number {
    const extra = keys.reduce((sum, key) => sum + csrCost(key) - 1, 0);
    if (extra === 0) return 0;
    const whole = taken + extra;
    if (whole > this.perAgent.capacity) {
      this.refund(agentId, taken);
      return this.admit(agentId, whole);
    }
    if (this.admit(agentId, extra) === 0) return 0;
    this.refund(agentId, taken);
    return Math.max(this.global.wait('*', whole), this.perAgent.wait(agentId, whole));
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
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? P384_COST : 1;
}

const P384_COST = 5;
