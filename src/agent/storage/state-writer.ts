import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';

/** What a write answers when it is pending: settles, never rejecting, once what keeps it pending has ended. */
export type PendingWrite = Promise<void>;

export interface StateWriterOptions {
  clock: Clock;
  log: Logger;
  /**
   * Writes the current state (synchronously, atomically). Answers a promise when it is pending, not saved yet (the
   * first snapshot being written off the event loop, AgentStore.saveChanges): one that settles, never rejecting, once
   * that write has ended (AgentStore.compactionSettled). The state is written again then, once, and not before.
   */
  write: () => PendingWrite | void;
  /** How long changes are gathered before one write; default 200 ms. */
  delayMs?: number;
}

/**
 * Coalesces state writes: a burst of changes (a sync update of a thousand entries, their SVIDs arriving in batches)
 * becomes one save of the state a moment later (state-persister.ts: one journal batch of what changed, or a new
 * snapshot), instead of one fsync per change. A failed write is logged
 * and retried. `flush()` writes now if anything is pending (shutdown); `saveNow()` writes one part now (a withdrawal)
 * and leaves the rest to the coalesced write. A write that answers pending is written again once what keeps it
 * pending has ended, not polled: changes made meanwhile wait for that one write (one such write a turn at most).
 */
export class StateWriter {
  private timer: TimerHandle | undefined;
  private dirty = false;
  private failures = 0;
  private stopped = false;
  /** The pending write the state is written again after (write answered it); no timer is armed meanwhile. */
  private awaited: PendingWrite | undefined;
  /** Set from a write made because a pending one settled until the event loop's next turn (afterSettled). */
  private rewroteThisTurn = false;
  private readonly delayMs: number;

  constructor(private readonly o: StateWriterOptions) {
    this.delayMs = o.delayMs ?? 200;
  }

  markDirty(): void {
    // After stop() the data dir may belong to the next agent: a late change (an SVID call that was still out) is
    // not written.
    if (this.stopped) return;
    this.dirty = true;
    if (this.timer === undefined && this.awaited === undefined) this.arm(this.delayMs);
  }

  flush(): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    try {
      const pending = this.o.write();
      this.failures = 0;
      this.writeAgainAfter(pending);
    } catch (err) {
      this.awaited = undefined;
      this.failed(err);
    }
  }

  /**
   * Saves part of what is pending now, with `write` (synchronous; a change that must be durable before anyone hears
   * of it); the rest keeps its coalesced write. When `write` fails, the whole state is retried with backoff, as after
   * a failed flush. While such a retry is due, the whole state is written instead of the part: the part names only
   * its own change, and a withdrawal the disk refused before would otherwise stay unsaved behind one it took. A part
   * that is pending (`write` answering a promise) is followed by one write of the whole state once that settles.
   */
  saveNow(write: () => PendingWrite | void): void {
    if (this.stopped) return;
    if (this.failures > 0) {
      this.dirty = true;
      this.flush();
      return;
    }
    try {
      const pending = write();
      if (pending !== undefined) this.writeAgainAfter(pending);
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

  /**
   * After a write that answered `pending`: the whole state is written once it settles (the changes the write took,
   * pending with it, are saved only then, and later ones wait for it). A write that saved ends any wait.
   */
  private writeAgainAfter(pending: PendingWrite | void): void {
    if (pending === undefined) {
      this.awaited = undefined;
      return;
    }
    this.dirty = true;
    this.timer?.cancel();
    this.timer = undefined;
    if (this.awaited === pending) return;
    this.awaited = pending;
    void pending.then(() => this.afterSettled(pending));
  }

  /**
   * Writes the state again now that `pending` settled; but a second such write in one turn waits for the next. The
   * store answers a promise that settles once it is no longer pending (AgentStore.compactionSettled); one answering a
   * promise already settled while it still says pending (a change to the store keeping an old compaction's promise)
   * would have each write answer, settle and write again in microtasks, holding the event loop: no I/O, no timer,
   * no workload served, for as long as it said pending. Now that is one write a turn.
   */
  private afterSettled(pending: PendingWrite): void {
    if (this.awaited !== pending) return;
    if (this.rewroteThisTurn) {
      setImmediate(() => this.afterSettled(pending));
      return;
    }
    this.rewroteThisTurn = true;
    setImmediate(() => {
      this.rewroteThisTurn = false;
    });
    this.awaited = undefined;
    this.flush();
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
