import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/log.js';

/** How often the server's housekeeping runs (MeshidServer.housekeeping): about once a minute. */
export const HOUSEKEEPING_INTERVAL_MS = 60_000;

/**
 * Runs the server's housekeeping every HOUSEKEEPING_INTERVAL_MS of `clock` time, counted from the end of the previous
 * run: runs never overlap, and a slow one (a busy datastore) delays the next instead of piling more on it. On the
 * system clock a timer fires once the interval has passed on the wall clock or on the monotonic one, whichever is
 * first, so a wall clock stepped back does not hold housekeeping up for the length of the step, and a timer that fires
 * late on a busy event loop runs late rather than not at all.
 *
 * Not node-cron, which ran it before: node-cron waits for the wall clock to reach the minute it expected next, so a
 * clock stepped back an hour stopped pruning and the CA recheck for that hour, and it drops a minute whose timer fired
 * more than a second late. Housekeeping needs no calendar, only "about once a minute".
 */
export class HousekeepingSchedule {
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly run: () => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.arm();
  }

  /** Stops the schedule and waits for a run in progress, so that what it uses (the datastore) can be closed next. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.running = this.runOnce()
        .catch((err: unknown) => this.log.error({ err }, 'housekeeping failed; it runs again in a minute'))
        .finally(() => {
          this.running = undefined;
          this.arm();
        });
    }, HOUSEKEEPING_INTERVAL_MS);
  }

  /**
   * One run, its synchronous throw turned into a failed run: thrown out of the timer it would crash the process (an
   * uncaught exception on the system clock) and leave nothing armed, so housekeeping would never run again.
   */
  private runOnce(): Promise<void> {
    try {
      return this.run();
    } catch (err) {
      return Promise.reject(err);
    }
  }
}
