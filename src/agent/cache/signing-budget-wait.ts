import type { Clock } from '../../common/clock.js';

/**
 * How long the server's signing budget has told this agent to wait, shared by X.509-SVID signing (x509-budget-hold.ts)
 * and JWT-SVID signing (jwt-signing-hold.ts). The server charges SignX509Svids and SignJwtSvid to one budget per agent
 * (its SigningLimits), so a refusal of either means the other is refused too until the retry time: each kind waiting
 * on its own only sent one more call per wait to be refused. It holds what the server asked (with jitter), never a
 * kind's own backoff beyond it: that holds its own kind alone (x509-budget-hold.ts).
 */
export class SigningBudgetWait {
  private until = 0;
  private refused = 0;

  constructor(private readonly clock: Clock) {}

  /** How many refusals have held signing so far: a signing that saw this change while out was sent before one. */
  get refusals(): number {
    return this.refused;
  }

  /** When signing may go again, or undefined when it may go now. */
  heldUntil(): number | undefined {
    return this.clock.now() < this.until ? this.until : undefined;
  }

  /** No signing before `at` (epoch ms on the clock); an earlier time than one already held changes nothing. */
  holdUntil(at: number): void {
    this.refused++;
    this.until = Math.max(this.until, at);
  }
}
