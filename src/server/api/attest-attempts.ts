import type { Clock } from '../../common/clock.js';
import { MeshidError } from '../../common/errors.js';
import { RateLimiter } from '../../common/rate-limiter.js';
import { sourceKey } from '../source-key.js';

/** Attestation attempts per source address: far above a host's needs (one, then one per eviction), far below a flood. */
const ATTEST_RATE_PER_SECOND = 5;
const ATTEST_BURST = 100;

/**
 * Attest attempts per source address (source-key.ts). Attest is the one agent API call anyone who reaches the port can
 * make: each attempt is a datastore lookup, and a refused one a write. Charged when the call's metadata arrives
 * (agent-call-gate.ts), before its request is decoded: a 4 MiB request of unknown fields still costs ~25–30 ms to
 * check and decode, so a limit charged in the handler would leave one source address a sixth of a core.
 */
export class AttestAttempts {
  private readonly limiter: RateLimiter;

  constructor(clock: Clock) {
    this.limiter = new RateLimiter(ATTEST_RATE_PER_SECOND, ATTEST_BURST, clock);
  }

  /**
   * Charges one attempt from `peer` (grpc-js's `call.getPeer()`, "address:port"); returns its refusal when the
   * source's budget is spent. UNAVAILABLE, as the agent takes it: it retries its first attestation with backoff; with
   * the wait as retry pushback (as the budgets' refusals), so that an agent retries no sooner than the source's next
   * attempt is due, instead of spending a backoff's early tries on refusals.
   */
  charge(peer: string): MeshidError | undefined {
    const source = sourceKey(peer);
    const wait = this.limiter.take(source);
    if (wait <= 0) return undefined;
    return new MeshidError('unavailable', `too many attestation attempts from ${source}; retry in ${Math.ceil(wait / 1000)} s`, { retryAfterMs: Math.ceil(wait) });
  }
}
