import type { Backoff } from '../client/backoff.js';

/**
 * When the entries held back by failed calls (the server unreachable, or failing the whole call) are retried, all
 * together. Each renewal falls due at its own jittered instant, so during an outage each entry failed alone and was
 * retried alone on its own backoff: one call per entry per round (10,000 entries, ~40 calls a second), where a round
 * of batches does the same. A call failing while a round is ahead joins it.
 */
export class CallRetryRound {
  /** When the round ahead is retried; 0 when there is none. */
  private callRetryAt = 0;

  constructor(private readonly callBackoff: Backoff) {}

  /** A call succeeded, or the connection came back: no round is ahead, and the backoff starts over. */
  reset(): void {
    this.callBackoff.reset();
    this.callRetryAt = 0;
  }

  /**
   * How long after `now` the entries of a call that failed then are retried. `cap`: the bound of the batch's retry
   * (retryCapWithin), Infinity for none. `asked`: the wait a signing budget refusal named, jittered; undefined for
   * any other failure.
   */
  delayAfterFailure(now: number, cap: number, asked: number | undefined): number {
    // Any other failure joins the retry round ahead, if there is one (callRetryAt) and it is not past this batch's
    // bound; else this batch's retry becomes the round. A budget refusal's wait is the server's, and holds the whole
    // queue until then anyway (heldByBudget). The backoff grows once a round: counted per call, a round of ten
    // failing calls took it from 1 s to its 5 min at once.
    const startsRound = asked === undefined && (this.callRetryAt <= now || this.callRetryAt > now + cap);
    const backoff = asked !== undefined || startsRound ? this.callBackoff.next(cap) : 0;
    if (startsRound) this.callRetryAt = now + backoff;
    return asked === undefined ? this.callRetryAt - now : Math.max(backoff, asked);
  }
}
