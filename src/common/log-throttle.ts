import type { Clock, TimerHandle } from './clock.js';

/** How many distinct keys are tracked before the oldest are forgotten, by default: keys are reasons, not callers. */
const MAX_KEYS = 256;

export interface LogThrottleOptions {
  /** Reports the lines left out when their window ends (see the class). */
  onWindowEnd?: (key: string, suppressed: number) => void;
  /**
   * Keys tracked at most (default 256). A user whose keys are many but bounded (one per cached entry) passes that
   * bound: keys cycled past it are forgotten before they come round, and every line would be logged.
   */
  maxKeys?: number;
}

interface Window {
  readonly key: string;
  until: number;
  suppressed: number;
  /** The timer that reports this window's suppressed lines at its end, once one was left out (onWindowEnd only). */
  timer: TimerHandle | undefined;
}

/**
 * Lets one log line per key per window and counts the rest, so a client retrying a refused call in a tight
 * loop costs one line a minute (saying how many were left out), not one per call: about 1 GB of logs an hour. Keys
 * must not hold what a caller chooses (a requested SPIFFE ID): a caller varying it would never be throttled.
 *
 * With `onWindowEnd`, the lines left out are also reported when their window ends, not only at the key's next line:
 * a fault that stops (a disk freed) would otherwise never say how often it happened in its last minute.
 */
export class LogThrottle {
  private readonly windows = new Map<string, Window>();
  /** Windows whose end-of-window report is pending, including those whose key was forgotten to make room. */
  private readonly armed = new Set<Window>();
  private stopped = false;

  private readonly onWindowEnd: ((key: string, suppressed: number) => void) | undefined;
  private readonly maxKeys: number;

  constructor(
    private readonly clock: Clock,
    private readonly windowMs = 60_000,
    options: LogThrottleOptions = {},
  ) {
    this.onWindowEnd = options.onWindowEnd;
    this.maxKeys = options.maxKeys ?? MAX_KEYS;
  }

  /**
   * undefined: leave this one out. Otherwise the fields to log it with: how many lines of its key were left out
   * since the last one logged, when any were (and onWindowEnd has not reported them yet).
   */
  admit(key: string): { suppressedSinceLast?: number } | undefined {
    const now = this.clock.now();
    const w = this.windows.get(key);
    // A window that starts after now (the wall clock stepped back) is over: kept, it would silence its key for as
    // long as the step, hiding the very faults (clock skew among them) that a step comes with.
    if (w !== undefined && now < w.until && now >= w.until - this.windowMs) {
      w.suppressed++;
      if (this.onWindowEnd !== undefined && w.timer === undefined && !this.stopped) {
        // Holds the window itself, not its key's slot: one forgotten to make room for other keys still reports.
        w.timer = this.clock.setTimer(() => this.report(w), w.until - now);
        this.armed.add(w);
      }
      return undefined;
    }
    this.windows.delete(key);
    if (this.windows.size >= this.maxKeys) this.windows.delete(this.windows.keys().next().value!);
    this.windows.set(key, { key, until: now + this.windowMs, suppressed: 0, timer: undefined });
    const suppressed = w?.suppressed ?? 0;
    // Its timer, late on a busy host, must not report these a second time.
    if (w !== undefined) w.suppressed = 0;
    return suppressed > 0 ? { suppressedSinceLast: suppressed } : {};
  }

  /**
   * For the owner's shutdown: reports now what each pending window left out (the last minute of a fault is what an
   * operator looks for when a daemon stopped) and cancels those windows' timers, so no summary is written after the
   * owner said it stopped, and no timer of a stopped daemon stays in an embedding process. Lines admitted later are
   * still throttled, their count carried by the key's next line as without onWindowEnd.
   */
  stop(): void {
    this.stopped = true;
    for (const w of [...this.armed]) {
      w.timer!.cancel();
      this.report(w);
    }
  }

  private report(w: Window): void {
    this.armed.delete(w);
    const suppressed = w.suppressed;
    w.suppressed = 0;
    // The window is over: the key's next line is logged in full, as the first of a new window.
    if (this.windows.get(w.key) === w) this.windows.delete(w.key);
    if (suppressed > 0) this.onWindowEnd!(w.key, suppressed);
  }
}
