/** Exponential backoff settings, in milliseconds. */
export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier: number;
}

/** Reconnecting to the server: 0.5 s, 1 s, 2 s … capped at 30 s, each spread by jitter. */
export const RECONNECT_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 500, maxMs: 30_000, multiplier: 2 });

/**
 * The delay before retry number `attempt` (0-based): initial × multiplier^attempt capped at max, then a uniformly
 * random point in its upper half ("equal jitter"), so a fleet of agents that lost the server together does not come
 * back in lockstep, yet no retry comes sooner than half the nominal delay. `random` returns [0, 1). `maxMs`, below the
 * policy's, caps this one delay (a deadline the retry must not outwait) and is jittered the same way.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random, maxMs = policy.maxMs): number {
  const nominal = Math.min(policy.maxMs, maxMs, policy.initialMs * policy.multiplier ** Math.max(0, attempt));
  return Math.round(nominal / 2 + (nominal / 2) * random());
}

/** An attempt counter over backoffDelay: next() grows the delay, reset() after a success starts over. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly policy: BackoffPolicy = RECONNECT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay, capped at `maxMs` if given (the attempt still counts: the growth goes on past the cap). */
  next(maxMs?: number): number {
    return backoffDelay(this.attempt++, this.policy, this.random, maxMs);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/**
 * A retry of something whose SVID is still served (a workload SVID in SvidIssuer, the agent SVID in AgentIdentity)
 * comes within this share of the time that SVID has left (never under RETRY_WITHIN_LEFT_FLOOR_MS). The doubling alone outwaits a short SVID: a 10 min one whose renewal fails from its
 * half-life has its last try 45-170 s before expiry and its next 15-210 s after it, so a server that recovers in
 * between still lets it lapse. With a quarter (jittered to an eighth..a quarter), signing that recovers is picked up
 * while at least three quarters of what was left remain, which leaves room for a call that fails only at its
 * deadline; it costs about 15-30 tries over a failing 10 min SVID's last 5 min (about 10 without it), the last few
 * 2.5-5 s apart. An entry with no SVID served, or an expired one, keeps the plain backoff: nothing to protect, and the
 * server must not be hammered for it.
 */
const RETRY_WITHIN_LEFT = 0.25;

/**
 * The shortest such bound: SPIRE's agent syncs every 5 s, and a server is sized for a fleet asking that often. A
 * bound of 1 s would let 10,000 agents whose SVIDs near expiry together (all renewed in the same recovery) come back
 * every 0.5-1 s over their SVIDs' last 4 s, some 13,000 calls a second at a server that is failing already (a fast
 * UNAVAILABLE: restarting, shedding connections); with 5 s it is at most about 2,700, 2.5-5 s apart, over the last
 * 20 s. Lost: only signing that recovers in an SVID's last 2.5-5 s, whose renewal would reach the workloads and their
 * peers too late to matter.
 */
const RETRY_WITHIN_LEFT_FLOOR_MS = 5000;

/**
 * The longest retry delay for something whose SVID ends at `notAfter` (RETRY_WITHIN_LEFT of the time left, at least
 * RETRY_WITHIN_LEFT_FLOOR_MS and the policy's first delay); Infinity when there is none or it has expired.
 */
export function retryCapWithin(notAfter: number | undefined, now: number, policy: BackoffPolicy): number {
  const left = notAfter === undefined ? 0 : notAfter - now;
  return left > 0 ? Math.max(policy.initialMs, RETRY_WITHIN_LEFT_FLOOR_MS, left * RETRY_WITHIN_LEFT) : Infinity;
}
