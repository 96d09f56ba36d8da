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
