/**
 * Time as a dependency. Everything time-based (TTLs, rotation, token expiry, backoff) takes a Clock so tests can run
 * days of simulated time in seconds with FakeClock.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls fn once after ms of this clock's time; the handle cancels it. */
  setTimer(fn: () => void, ms: number): TimerHandle;
}

/** How often a pending system timer re-reads the wall clock (see wallClock). */
export const WALL_CLOCK_CHECK_MS = 30_000;

/**
 * The host's clock. Its timers fire once `ms` have passed on either clock: the wall clock every deadline is written
 * in (SVID and CA expiry, renewal at half-life), re-read at least every `checkEveryMs`, or the monotonic clock. Node's
 * setTimeout alone counts only monotonic time, which stands still while the host is suspended (a laptop's lid, a
 * paused VM) and ignores a clock stepped forward: a renewal due at half-life would then fire up to the whole suspend
 * later, serving SVIDs past their expiry meanwhile. The monotonic side keeps a step of the wall clock backwards from
 * holding up a short timer (a reconnect backoff) for as long as the step. `now` is injectable for tests.
 */
export function wallClock(now: () => number = Date.now, checkEveryMs = WALL_CLOCK_CHECK_MS): Clock {
  return {
    now,
    setTimer(fn, ms) {
      const due = now() + ms;
      const started = performance.now();
      let t: NodeJS.Timeout;
      const arm = (): void => {
        const left = Math.min(due - now(), ms - (performance.now() - started));
        // Also keeps each setTimeout below its 2^31-1 ms limit (~24.8 days).
        t = setTimeout(left > checkEveryMs ? arm : fn, Math.max(0, Math.min(left, checkEveryMs)));
        t.unref?.();
      };
      arm();
      return { cancel: () => clearTimeout(t) };
    },
  };
}

export const systemClock: Clock = wallClock();

interface FakeTimer {
  due: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A clock that moves only when told to; timers fire in due order during advance(). */
export class FakeClock implements Clock {
  private current: number;
  private timers: FakeTimer[] = [];
  private seq = 0;

  constructor(start: number = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = { due: this.current + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }

  /** Moves time forward by ms, firing every timer that falls due, each at its own instant. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      this.timers.sort((a, b) => a.due - b.due || a.seq - b.seq);
      const next = this.timers[0];
      if (next === undefined || next.due > target) break;
      this.timers.shift();
      this.current = Math.max(this.current, next.due);
      next.fn();
    }
    this.current = target;
  }

  set(ms: number): void {
    if (ms < this.current) throw new Error('FakeClock cannot go backwards');
    this.advance(ms - this.current);
  }

  pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }
}
