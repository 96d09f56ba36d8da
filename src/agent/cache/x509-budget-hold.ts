import type { Clock, TimerHandle } from '../../common/clock.js';
import { BUDGET_REFUSALS_WAITED_FOR_MS } from '../client/budget-refusal.js';
import type { SigningBudgetWait } from './signing-budget-wait.js';

/**
 * How the X.509-SVID issuer's queue (svid-issuer.ts) waits for the server's signing budget after a refusal, as
 * jwt-signing-hold.ts is JWT signing's: until when no call goes, the one timer that flushes the queue then, and since
 * when each entry has been refused, for how long a first Workload API message waits for it.
 */
export class X509BudgetHold {
  /**
   * Until when the server's last budget refusal, of X.509 or JWT signing, asked this agent to wait (its hint, with
   * jitter): no call goes before then, queued, kicked and newly requested entries included. The budget refuses every
   * call until then, so sending the other queued batches would only be refused too, each growing the call backoff far
   * past the hint.
   */
  private readonly budget: SigningBudgetWait;
  /**
   * Until when this queue's own call backoff holds it after a budget refusal, when that runs past the server's wait:
   * X.509 signing's alone. The shared wait (`budget`) gets only what the server asked, or a run of X.509 refusals,
   * each doubling the backoff, would hold JWT signing far past the budget's return, and FetchJWTSVID, which waits out
   * at most BUDGET_REFUSALS_WAITED_FOR_MS, would be refused at once without a call.
   */
  private ownBackoffUntil = 0;
  /** When the signing budget first refused each entry since it was last signed or requested. */
  private readonly refusedSince = new Map<string, number>();
  private timer: TimerHandle | undefined;

  constructor(
    budget: SigningBudgetWait,
    private readonly clock: Clock,
  ) {
    this.budget = budget;
  }

  /** Until when no X.509 signing call goes (epoch ms; in the past when calls may go). */
  until(): number {
    return Math.max(this.budget.heldUntil() ?? 0, this.ownBackoffUntil);
  }

  /** A budget refusal at `now`: the server's wait `asked` (jitter added) and the queue's own retry `delay`, in ms. */
  refused(now: number, asked: number, delay: number): void {
    this.budget.holdUntil(now + asked);
    this.ownBackoffUntil = Math.max(this.ownBackoffUntil, now + delay);
  }

  /**
   * Whether a first Workload API message still waits for an entry the signing budget refused (or holds back), to be
   * tried at `retryAt`: while that falls within BUDGET_REFUSALS_WAITED_FOR_MS of the entry's first refusal.
   */
  waitedFor(entryId: string, now: number, retryAt: number): boolean {
    const since = this.refusedSince.get(entryId) ?? now;
    this.refusedSince.set(entryId, since);
    return retryAt - since <= BUDGET_REFUSALS_WAITED_FOR_MS;
  }

  /** The entry was signed, requested anew or is gone: a later refusal starts its wait over. */
  forget(entryId: string): void {
    this.refusedSince.delete(entryId);
  }

  /** Runs `flush` once `delayMs` from now; one already armed stays (its flush holds the queue again if need be). */
  wakeAfter(delayMs: number, flush: () => void): void {
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      flush();
    }, delayMs);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
