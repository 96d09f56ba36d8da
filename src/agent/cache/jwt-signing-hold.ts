import type { Clock } from '../../common/clock.js';
import { budgetSpent } from '../../common/errors.js';
import { budgetRefusalWaitMs } from '../client/budget-refusal.js';
import { SigningBudgetWait } from './signing-budget-wait.js';

/**
 * The one wait of all JWT-SVID signing for the server's signing budget, shared with the X.509-SVID issuer, which holds
 * its whole queue (SigningBudgetWait). The budget is the agent's, not an audience's: once the server refused one
 * signing, it refuses every other until its retry time, so callers waiting on different entries or audiences, each
 * retrying on its own timer, only made one refused call each per wait.
 *
 * - After a budget refusal, of a JWT or an X.509 signing, no SignJwtSvid goes before the server's retry time plus up
 *   to a second of jitter (drawn once per refusal, so the agents a storm's refusals told the same wait do not all come
 *   back at once): a signing asked for meanwhile fails at once with a refusal carrying the time left (`heldUntil`),
 *   without a call.
 * - From then until a signing succeeds with none waiting behind it, signings go one at a time: the budget has refilled
 *   by what the server said one call costs, not by what all the waiting callers need, and a call refused again holds
 *   the others back before they are sent. Then all go at once again.
 */
export class JwtSigningHold {
  private recovering = false;
  private busy = false;
  /** Signings waiting for their turn while recovering, in order. */
  private readonly queue: Array<() => void> = [];

  constructor(
    private readonly clock: Clock,
    /** Jitter source, [0, 1). */
    private readonly random: () => number,
    private readonly budget: SigningBudgetWait = new SigningBudgetWait(clock),
  ) {}

  /** When signing may go again after a budget refusal (a JWT or an X.509 signing's), or undefined when it may go now. */
  heldUntil(): number | undefined {
    return this.budget.heldUntil();
  }

  /** Runs `sign` (one SignJwtSvid) when the budget allows; a budget refusal it meets holds every other signing. */
  async run<T>(sign: () => Promise<T>): Promise<T> {
    this.throwIfHeld();
    if (!this.recovering) return this.observe(sign, false);
    // The turn is handed from one signing to the next (busy stays set), not released and re-taken: a waiter resumes
    // a microtask after it is woken, and a newcomer arriving in between would otherwise find the turn free and run
    // alongside it.
    if (this.busy) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.busy = true;
    try {
      // Refused again while this one waited for its turn: it goes back to its caller's wait without a call.
      this.throwIfHeld();
      return await this.observe(sign, true);
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.busy = false;
    }
  }

  /** `inTurn`: sent one at a time while recovering; only such a success shows the budget has room again. */
  private async observe<T>(sign: () => Promise<T>, inTurn: boolean): Promise<T> {
    const refusalsBefore = this.budget.refusals;
    try {
      const result = await sign();
      // A signing sent before a refusal that came meanwhile was admitted before the budget ran out: its success says
      // nothing of the budget now, and ending the recovery on it would let every waiter go at once. That holds for one
      // sent in turn too, when another signing (a late JWT one, an X.509 one) was refused while it was out.
      if (inTurn && this.queue.length === 0 && this.budget.refusals === refusalsBefore) this.recovering = false;
      return result;
    } catch (err) {
      const wait = budgetRefusalWaitMs(err);
      if (wait !== undefined) {
        this.budget.holdUntil(this.clock.now() + wait + Math.round(this.random() * 1000));
        this.recovering = true;
      }
      throw err;
    }
  }

  private throwIfHeld(): void {
    const until = this.heldUntil();
    if (until === undefined) return;
    // Held by an X.509 signing's refusal too: the callers this sends back all return when it ends, and should then go
    // one at a time as after a refusal of their own, or each would cost a refused call should the budget still be spent.
    this.recovering = true;
    throw budgetSpent('meshid-server refused to sign for now', until - this.clock.now());
  }
}
