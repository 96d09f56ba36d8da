import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';

export interface StateWriterOptions {
  clock: Clock;
  log: Logger;
  /**
   * Writes the current state (synchronously, atomically). Answers false when it is pending, not saved yet (the first
   * snapshot being written off the event loop, AgentStore.saveChanges): it is written again after the delay, until
   * it answers otherwise.
   */
  write: () => boolean | void;
  /** How long changes are gathered before one write; default 200 ms. */
  delayMs?: number;
}

/**
 * Coalesces state writes: a burst of changes (a sync update of a thousand entries, their SVIDs arriving in batches)
 * becomes one save of the state a moment later (state-persister.ts: one journal batch of what changed, or a new
 * snapshot), instead of one fsync per change. A failed write is logged
 * and retried. `flush()` writes now if anything is pending (shutdown); `saveNow()` writes one part now (a withdrawal)
 * and leaves the rest to the coalesced write.
 */
export class StateWriter {
  private timer: TimerHandle | undefined;
  private dirty = false;
  private failures = 0;
  private stopped = false;
  private readonly delayMs: number;

  constructor(private readonly o: StateWriterOptions) {
    this.delayMs = o.delayMs ?? 200;
  }

  markDirty(): void {
    // After stop() the data dir may belong to the next agent: a late change (an SVID call that was still out) is
    // not written.
    if (this.stopped) return;
    this.dirty = true;
    if (this.timer === undefined) this.arm(this.delayMs);
  }

  flush(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    try {
      const saved = this.o.write();
      this.failures = 0;
      if (saved === false) this.markDirty();
    } catch (err) {
      this.failed(err);
    }
  }

  /**
   * Saves part of what is pending now, with `write` (synchronous; a change that must be durable before anyone hears
   * of it); the rest keeps its coalesced write. When `write` fails, the whole state is retried with backoff, as after
   * a failed flush. While such a retry is due, the whole state is written instead of the part: the part names only
   * its own change, and a withdrawal the disk refused before would otherwise stay unsaved behind one it took. A part
   * that is pending (`write` answering false) is followed by a coalesced write, as flush's is.
   */
  saveNow(write: () => boolean | void): void {
    if (this.stopped) return;
    if (this.failures > 0) {
      this.dirty = true;
      this.flush();
      return;
    }
    try {
      if (write() === false) this.markDirty();
    } catch (err) {
      this.timer?.cancel();
      this.timer = undefined;
      this.dirty = true;
      this.failed(err);
    }
  }

  /** Writes what is pending and stops: nothing is written after this returns. */
  stop(): void {
    this.flush();
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private failed(err: unknown): void {
    this.dirty = true;
    this.failures++;
    const retryMs = Math.min(60_000, this.delayMs * 2 ** this.failures);
    this.o.log.error({ err, retryInMs: retryMs }, 'cannot persist the agent state; will retry');
    this.arm(retryMs);
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    this.timer = this.o.clock.setTimer(() => {
      this.timer = undefined;
      this.flush();
    }, ms);
  }
}
