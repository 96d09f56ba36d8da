import type { Clock } from './clock.js';
import { formatDuration } from './duration.js';
import type { Logger } from './log.js';

/**
 * The log of a call retried with backoff while its failure lasts (the server down, refusing, out of budget): the
 * failure is logged when it begins and when it changes kind, each retry after that at debug, and its end once
 * (`recovered`, with how long it lasted). A server down for an hour costs the operator a line, not one per retry,
 * and the line that says it is over says for how long it was not.
 */
export class OutageLog {
  private current: { kind: string; since: number; attempts: number } | undefined;

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  /** A failed attempt: logged at `level` when `kind` is not what failed last, at debug when it is. */
  failed(kind: string, level: 'warn' | 'error', fields: Record<string, unknown>, message: string): void {
    const now = this.clock.now();
    if (this.current?.kind === kind) {
      this.current.attempts++;
      this.log.debug({ ...fields, failedAttempts: this.current.attempts }, message);
      return;
    }
    this.current = { kind, since: this.current?.since ?? now, attempts: (this.current?.attempts ?? 0) + 1 };
    this.log[level](fields, `${message} (retries are logged at debug level until it succeeds)`);
  }

  /** The call succeeded: the fields telling how long it failed, or undefined when it had not. */
  recovered(): { failingFor: string; failedAttempts: number } | undefined {
    const c = this.current;
    if (c === undefined) return undefined;
    this.current = undefined;
    return { failingFor: formatDuration(this.clock.now() - c.since), failedAttempts: c.attempts };
  }
}
