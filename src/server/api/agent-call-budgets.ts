import type { Clock } from '../../common/clock.js';
import { budgetSpent, type MeshidError } from '../../common/errors.js';
import { RateLimiter } from '../../common/rate-limiter.js';

/**
 * Sync opens per agent. Each open reads the agent's row, computes its authorized set and pushes every entry it lacks,
 * so an agent looping on opens would spend the server's CPU on that alone. A real agent reopens after a failure with
 * backoff (0.5 s, doubling up to 30 s; reset only once a stream has synced) and when its SVID or the trust bundle
 * changes (renewals, CA rotation steps): a handful an hour. Thirty in a row and one every two seconds after that is
 * beyond any of it, even a link that drops the stream right after each sync.
 */
const SYNC_OPEN_RATE_PER_SECOND = 0.5;
const SYNC_OPEN_BURST = 30;

/**
 * Renewals per agent, besides the signing token each one costs: each is also a synchronous datastore write. A real
 * agent renews at half-life (twice per agent SVID lifetime, 24 h by default), again when its SVID chains to a tainted
 * authority, and retries failures with backoff from 1 s: ten in a row and one every ten seconds after that covers all
 * of it. Agent SVIDs shorter than a minute or so are renewed more often than that (every TTL/2 less the 10 s
 * backdate), and a refused renewal's backoff can then outlast the SVID, leaving the agent to re-attest: the rate
 * grows to ten renewals per lifetime, five times what such an agent needs.
 */
export function renewRatePerSecond(agentSvidTtlMs: number): number {
  return Math.max(0.1, 10 / (agentSvidTtlMs / 1000));
}
const RENEW_BURST = 10;

const SYNC_PATH = '/meshid.agent.v1.Node/Sync';
const RENEW_PATH = '/meshid.agent.v1.Node/Renew';

/**
 * The per-agent budgets of the agent API calls that are not signing (signing-limits.ts budgets those): Sync opens and
 * renewals, keyed by the agent's SPIFFE ID. They are charged when a call's metadata arrives (agent-call-gate.ts),
 * before its request is read: a Sync request can take the server ~0.45–0.9 s of CPU to decode (two million empty
 * `known` items in 4 MiB), so a refusal after decoding would still let one compromised agent keep a core busy.
 */
export class AgentCallBudgets {
  private readonly syncOpens: RateLimiter;
  private readonly renewals: RateLimiter;

  constructor(agentSvidTtlMs: number, clock: Clock) {
    this.syncOpens = new RateLimiter(SYNC_OPEN_RATE_PER_SECOND, SYNC_OPEN_BURST, clock);
    this.renewals = new RateLimiter(renewRatePerSecond(agentSvidTtlMs), RENEW_BURST, clock);
  }

  /**
   * Charges agent `agentId`'s call to the method at `path` (a grpc-js method path); returns its refusal when that
   * budget is spent (waiting is the cure, so it says how long), undefined otherwise. Other methods cost nothing here.
   */
  charge(path: string, agentId: string): MeshidError | undefined {
    if (path === SYNC_PATH) return refusal(agentId, 'opens Sync streams', this.syncOpens.take(agentId));
    if (path === RENEW_PATH) return refusal(agentId, 'renews its SVID', this.renewals.take(agentId));
    return undefined;
  }

  /** A renewal refused after it was charged (the signing budget was spent) was not made: its token goes back. */
  refundRenewal(agentId: string): void {
    this.renewals.refund(agentId, 1);
  }
}

function refusal(agentId: string, what: string, waitMs: number): MeshidError | undefined {
  if (waitMs <= 0) return undefined;
  return budgetSpent(`agent ${agentId} ${what} too often`, waitMs);
}
