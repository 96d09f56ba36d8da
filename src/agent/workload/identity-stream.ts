import type { Clock, TimerHandle } from '../../common/clock.js';
import { internal, isMeshidError, unavailable } from '../../common/errors.js';
import { noIdentityFor } from '../endpoints/refusal-log.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot, WorkloadCache } from '../cache/workload-cache.js';

/** A server-streaming call as grpc-js hands it to a handler, reduced to what an identity stream touches. */
export interface StreamCall<Res> {
  readonly cancelled: boolean;
  write(message: Res, callback: (error?: Error | null) => void): boolean;
  end(): void;
  emit(event: 'error', error: unknown): boolean;
  on(event: 'cancelled' | 'close' | 'finish', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** What one kind of stream (X.509-SVIDs, X.509 bundles, JWT bundles) sends. */
export interface StreamView<Res> {
  /**
   * The full-state message for this snapshot, or undefined when there is nothing valid to send yet (e.g. no SVID
   * issued). `first` is true while a first message may still wait for more (SVIDs being signed): until a message has
   * been written or the stream's pending window is over.
   */
  render(snapshot: IdentitySnapshot, first: boolean): Res | undefined;
  /** Whether two messages carry the same content: the second is then not sent. */
  same(a: Res, b: Res): boolean;
}

export interface IdentityStreamOptions<Res> {
  readonly call: StreamCall<Res>;
  readonly view: StreamView<Res>;
  readonly cache: Pick<WorkloadCache, 'snapshot' | 'subscribe'>;
  /** The caller's selectors, attested when the stream opened. */
  readonly selectors: readonly Selector[];
  /**
   * Throws when the caller may no longer be pushed to (callerRecheck); run before every message but one rendered in
   * the same turn as the open's own attestation.
   */
  readonly recheck?: () => void;
  /**
   * Whether the stream ends PERMISSION_DENIED once the caller holds no entry (default). False for bundle streams when
   * the agent serves bundles to callers without an entry (allowUnauthenticatedVerifiers).
   */
  readonly requireEntitlement?: boolean;
  readonly clock: Clock;
  /** How long the caller may be entitled with nothing to send before the stream ends UNAVAILABLE. */
  readonly pendingTimeoutMs: number;
  /**
   * Logs the status the stream ends with (the RefusalLog in workload-context.ts: the caller's pid, uid and gid, its
   * selectors for a lost entitlement, one line per code and caller uid a minute), so that a client reopening streams
   * that end in a loop, or a thousand streams ended at shutdown, write a line a minute, not one each.
   */
  readonly refused: (error: unknown) => void;
  /** Called exactly once, however the stream ends. */
  readonly onClose: () => void;
}

/**
 * One open Workload API stream (WL-API §4.3, §4.4; SPEC-NOTES §8): the first message as soon as there is something
 * valid to send, then a new full-state message whenever the content changes and never otherwise; PERMISSION_DENIED
 * once the caller holds no entry. A first message waits for SVIDs being signed at most `pendingTimeoutMs` from the
 * stream's start, however late a signing started or failed: then it goes with what there is, or, with nothing valid
 * to send, the stream ends UNAVAILABLE, so the client reconnects instead of waiting on a stream that never speaks.
 *
 * Memory per stream is bounded: at most one message is being written at a time; changes that arrive meanwhile only
 * mark the stream dirty, and when the write completes the next message is rendered from the state at that moment.
 * A client that stops reading therefore holds one message, not a backlog, and gets the newest state when it resumes.
 * Cache notifications are coalesced within one event-loop turn (the cache may notify more often than needed).
 */
export class IdentityStream<Res> {
  private closed = false;
  private writing = false;
  private dirty = false;
  private scheduled = false;
  private justAttested = false;
  private pendingOver = false;
  private last: Res | undefined;
  private unsubscribe: (() => void) | undefined;
  private pendingTimer: TimerHandle | undefined;
  /**
   * The call and the close callback (whose closure holds the call too) are let go at close. Measured with
   * --trace-gc-nvp at one FetchX509SVID per 0.3 ms: while a closed stream still pointed at its call, each young-GC
   * pause was ~2 ms and ~640 KB of finished calls survived it into the old generation (~50 KB and ~0.8 ms once let
   * go); a closed stream is still referenced for a while after it ends, and whatever it points at survives with it.
   */
  private call: StreamCall<Res> | undefined;
  private onClose: (() => void) | undefined;

  private readonly o: Omit<IdentityStreamOptions<Res>, 'call' | 'onClose'>;

  constructor(options: IdentityStreamOptions<Res>) {
    const { call, onClose, ...rest } = options;
    this.o = rest;
    this.call = call;
    this.onClose = onClose;
  }

  /** Subscribes first, then renders: a change between the two is not lost, it only causes one more comparison. */
  start(): void {
    const call = this.call!;
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('finish', () => this.close());
    call.on('error', () => this.close());
    if (call.cancelled) {
      this.close();
      return;
    }
    this.unsubscribe = this.o.cache.subscribe(this.o.selectors, () => this.schedule());
    // Attested a moment ago, when the call was admitted: a first message sent now needs no second look (P2). One
    // that has to wait (SVIDs still being signed) is checked like any later message.
    this.justAttested = true;
    this.pump();
    this.justAttested = false;
  }

  /** Whether the stream is still open (subscribed). */
  get open(): boolean {
    return !this.closed;
  }

  /** Ends the stream with the status for `error`: a MeshidError keeps its code; anything else is INTERNAL. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.o.refused(error);
    const call = this.call!;
    this.close();
    call.emit('error', toServiceError(error));
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Renders and sends the current state; says 'nothing' when there was nothing valid to send. */
  private pump(): 'nothing' | undefined {
    if (this.closed) return undefined;
    if (this.writing) {
      this.dirty = true;
      return undefined;
    }
    let message: Res | undefined;
    try {
      if (!this.justAttested) this.o.recheck?.();
      const snapshot = this.o.cache.snapshot(this.o.selectors);
      // The last entitlement is gone: redacted identities must not linger in clients (SPEC-NOTES §8).
      if (!snapshot.entitled && this.o.requireEntitlement !== false) {
        throw noIdentityFor(this.o.selectors, 'the caller is no longer entitled to any identity');
      }
      message = this.o.view.render(snapshot, this.last === undefined && !this.pendingOver);
    } catch (error) {
      this.fail(isMeshidError(error) ? error : internal('cannot build the Workload API response', error));
      return undefined;
    }
    if (message === undefined) {
      this.armPendingTimer();
      return 'nothing';
    }
    this.cancelPendingTimer();
    if (this.last !== undefined && this.o.view.same(this.last, message)) return undefined;
    this.last = message;
    this.writing = true;
    this.call!.write(message, () => {
      this.writing = false;
      if (this.dirty) {
        this.dirty = false;
        this.pump();
      }
    });
    return undefined;
  }

  private armPendingTimer(): void {
    if (this.pendingTimer !== undefined) return;
    this.pendingTimer = this.o.clock.setTimer(() => {
      this.pendingTimer = undefined;
      // The signings a first message waits for each have a window of their own (budget-refusal.ts), counted from
      // when they started or were first refused; past the stream's, what there is goes rather than an error.
      this.pendingOver = true;
      // Still nothing valid to send (the render re-armed the timer), whether or not earlier messages went: a stream
      // whose default SVID expired or left while the server is unreachable ends as one that never had one, so that
      // its client hears of it and reconnects instead of holding an identity the agent no longer serves.
      if (this.pump() !== 'nothing' || this.closed) return;
      this.fail(unavailable(`no identity could be served within ${Math.round(this.o.pendingTimeoutMs / 1000)} s (no valid SVID is held for it: still being signed, or meshid-server is unreachable); retry`));
    }, this.o.pendingTimeoutMs);
  }

  private cancelPendingTimer(): void {
    this.pendingTimer?.cancel();
    this.pendingTimer = undefined;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelPendingTimer();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const onClose = this.onClose!;
    this.call = undefined;
    this.onClose = undefined;
    onClose();
  }
}
