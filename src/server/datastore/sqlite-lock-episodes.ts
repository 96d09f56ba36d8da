import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';

/** How often a lock that goes on is logged again, with the writes refused since the last line. */
export const LOCK_WARN_EVERY_MS = 60_000;

interface Episode {
  readonly since: number;
  lastWarnAt: number;
  refused: number;
  refusedSinceWarn: number;
}

/**
 * The operator's view of another process holding the datastore's write lock (an sqlite3 shell left in a transaction,
 * a backup tool): every write then waits out the busy timeout and is refused UNAVAILABLE. That answer is the caller's
 * to retry, not a server fault, so the API layer logs it only at debug (api/handler.ts), and at the default level the
 * server said nothing while it refused every write. Here one lock episode is one warn line at its first refused write,
 * one more a minute while it lasts (with the writes refused meanwhile), and an info line at the first write that
 * succeeds again. Counts and times only: never what the refused writes held.
 */
export class SqliteLockEpisodes {
  private episode: Episode | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger | undefined,
    /** The file, named in the lines (the operator looks for who holds it open). */
    private readonly file: string | undefined,
    /** How long a write waited before it was refused (the connection's busy timeout), read at an episode's start. */
    private readonly busyTimeoutMs: () => number,
  ) {}

  /** A write refused because another connection held the lock past the busy timeout. */
  refused(): void {
    const now = this.clock.now();
    const e = this.episode;
    if (e === undefined) {
      this.episode = { since: now, lastWarnAt: now, refused: 1, refusedSinceWarn: 0 };
      this.log?.warn(
        { file: this.file, busyTimeoutMs: this.busyTimeoutMs() },
        'datastore writes are refused: another process holds the datastore locked (an sqlite3 shell or a backup tool in a transaction?); ' +
          'each write waits out the busy timeout and is answered UNAVAILABLE until that process lets go',
      );
      return;
    }
    e.refused++;
    e.refusedSinceWarn++;
    // A clock stepped back counts as a window over, as LogThrottle takes it: the line is not held up for the step.
    if (now - e.lastWarnAt >= LOCK_WARN_EVERY_MS || now < e.lastWarnAt) {
      this.log?.warn(
        { file: this.file, refusingForMs: Math.max(0, now - e.since), refusedSinceLast: e.refusedSinceWarn, refused: e.refused },
        'datastore writes are still refused: another process holds the datastore locked',
      );
      e.lastWarnAt = now;
      e.refusedSinceWarn = 0;
    }
  }

  /** A write committed: the lock, if one was being reported, is gone. */
  written(): void {
    const e = this.episode;
    if (e === undefined) return;
    this.episode = undefined;
    this.log?.info(
      { file: this.file, refusingForMs: Math.max(0, this.clock.now() - e.since), refused: e.refused },
      'datastore writes succeed again: the other process let go of the datastore lock',
    );
  }
}
