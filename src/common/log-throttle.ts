import type { Clock } from './clock.js';

/** How many distinct keys are tracked before the oldest are forgotten: keys are reasons, not callers. */
const MAX_KEYS = 256;

/**
 * Lets one log line per key through per window and counts the rest, so a client retrying a refused call in a tight
 * loop costs one line a minute (saying how many were left out), not one per call: about 1 GB of logs an hour. Keys
 * must not hold what a caller chooses (a requested SPIFFE ID): a caller varying it would never be throttled.
 */
export class LogThrottle {
  private readonly windows = new Map<string, { until: number; suppressed: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly windowMs = 60_000,
  ) {}

  /**
   * undefined: leave this one out. Otherwise the fields to log it with: how many lines of its key were left out
   * since the last one logged, when any were.
   */
  admit(key: string): { suppressedSinceLast?: number } | undefined {
    const now = this.clock.now();
    const w = this.windows.get(key);
    if (w !== undefined && now < w.until) {
      w.suppressed++;
      return undefined;
    }
    this.windows.delete(key);
    if (this.windows.size >= MAX_KEYS) this.windows.delete(this.windows.keys().next().value!);
    this.windows.set(key, { until: now + this.windowMs, suppressed: 0 });
    return w !== undefined && w.suppressed > 0 ? { suppressedSinceLast: w.suppressed } : {};
  }
}
