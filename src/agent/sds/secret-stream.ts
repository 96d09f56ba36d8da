import type { Clock, TimerHandle } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { internal, isMeshidError, permissionDenied, type ErrorCode } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { IdentitySnapshot, WorkloadCache } from '../cache/workload-cache.js';
import type { ResolvedSdsOptions } from './sds-options.js';
import { awaitsSigning, signingWaitEnd } from './signing-wait.js';
import type { SdsStats } from './stats.js';
import type { RpcStatus } from './messages.js';
import type { StreamNameShare } from './subscription-budget.js';
import type { StreamWaitingNames } from './waiting-names.js';
import { cutText } from '../../common/cut-text.js';

/** The part of the agent's cache SDS uses (the consumer owns the interface it needs). */
export type SdsCache = Pick<WorkloadCache, 'ready' | 'synced' | 'snapshot' | 'subscribe'>;

/** The bidi call as grpc-js hands it to a handler, reduced to what a secret stream touches. */
export interface SecretStreamCall<Req, Res> {
  readonly cancelled: boolean;
  write(message: Res, callback: (error?: Error | null) => void): boolean;
  end(): void;
  emit(event: 'error', error: unknown): boolean;
  on(event: 'data', listener: (request: Req) => void): unknown;
  on(event: 'end' | 'cancelled' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Everything a stream needs from the service, built once per attested call. */
export interface StreamContext {
  readonly cache: SdsCache;
  readonly selectors: readonly Selector[];
  /**
   * Throws when the caller may no longer be served (callerRecheck); run before every response, the first included:
   * it answers a request that may come long after the open's attestation.
   */
  readonly recheck?: () => void;
  readonly options: ResolvedSdsOptions;
  readonly log: Logger;
  readonly stats: SdsStats;
  readonly clock: Clock;
  /**
   * How long the first response waits for the caller's SVIDs still being signed (signing-wait.ts), and the call's
   * deadline on `clock` (Infinity for none): the wait ends in time to answer before it.
   */
  readonly signingWaitMs: number;
  readonly deadline: number;
  /** Called once when the stream is over, however it ended. */
  readonly onClose: () => void;
  /** Logs the status the stream ends with (the handler's RefusalLog: one line per code and caller uid a minute). */
  readonly refused: (error: unknown) => void;
  /** Logs the names the stream waits for that resolve to nothing, and when they are served (waiting-names.ts). */
  readonly waiting: StreamWaitingNames;
  /**
   * The stream's share of its uid's budget of subscribed names (subscription-budget.ts), resized on every change of
   * its subscription; the handler releases it when the stream closes. Absent, the stream's names are not counted.
   */
  readonly names?: StreamNameShare;
}

/** Pumps of streams notified in this event-loop turn. */
let due: Array<() => void> = [];

/**
 * Runs `pump` in the next check phase, together with every other stream notified in this turn: one immediate for
 * the thousand streams a rotation notifies, not one each.
 */
function runSoon(pump: () => void): void {
  if (due.length === 0) setImmediate(runDue);
  due.push(pump);
}

function runDue(): void {
  const now = due;
  due = [];
  for (const pump of now) pump();
}

/** Codes that end a stream for a request that cannot be served as asked (SdsStats.rejectedRequests). */
const REJECTED_REQUEST_CODES: ReadonlySet<ErrorCode> = new Set(['invalid_argument', 'not_found', 'failed_precondition']);

/** How much of Envoy's NACK text goes to the log: enough to diagnose, bounded against a hostile client. */
const MAX_LOGGED_DETAIL = 512;

/**
 * What SotW and Delta streams share: the cache subscription, the write discipline and the stream's end.
 *
 * Write discipline: at most one response is being written at a time. A change (cache notification, request) that
 * arrives meanwhile only marks the stream dirty; when the write completes the next response is computed from the
 * state at that moment. So a client that stops reading holds at most one response in memory however many rotations
 * happen, and it gets the newest state, not a backlog, when it reads again. Cache notifications are coalesced within
 * one event-loop turn (the cache may notify more often than needed); requests are answered synchronously, so
 * responses keep the order of the requests that caused them.
 */
export abstract class SecretStream<Req, Res> {
  protected closed = false;
  /** False until the first request is handled: nothing is sent before the client said what it wants. */
  protected started = false;
  /**
   * Whether the caller has held an entry during this stream. Such a stream ends when the last entry goes, even when
   * verifiers without entries are served: Envoy would otherwise keep presenting the certificate it last received.
   */
  private everEntitled = false;
  /** Whether a response was written: only the first one waits for SVIDs being signed. */
  private responded = false;
  /** While the first response waits for SVIDs being signed: the end of that wait; undefined before and after. */
  private signingWait: TimerHandle | undefined;
  /** The first response's wait for signing is over (its time ran out): it goes with what there is. */
  private signingWaitOver = false;
  private writing = false;
  private dirty = false;
  private scheduled = false;
  private unsubscribe: (() => void) | undefined;
  private readonly pumpScheduled = (): void => {
    this.scheduled = false;
    this.pump();
  };

  /**
   * Let go at close, with the close callback (whose closure holds the call too): a closed stream stays referenced
   * for a while after it ends, and a call it still pointed at survived young-generation GCs with it (measured on the
   * Workload API's streams, identity-stream.ts).
   */
  private call: SecretStreamCall<Req, Res> | undefined;
  private onClose: (() => void) | undefined;
  protected readonly ctx: Omit<StreamContext, 'onClose'>;

  constructor(call: SecretStreamCall<Req, Res>, ctx: StreamContext) {
    const { onClose, ...rest } = ctx;
    this.call = call;
    this.onClose = onClose;
    this.ctx = rest;
  }

  /** Subscribes to the cache and starts reading requests. */
  start(): void {
    const call = this.call!;
    this.unsubscribe = this.ctx.cache.subscribe(this.ctx.selectors, () => this.schedule());
    call.on('data', (request) => this.receive(request));
    // The client half-closed: it will send nothing more, so the exchange is over (xDS has no server-only tail).
    call.on('end', () => this.endOk());
    call.on('cancelled', () => this.close());
    call.on('close', () => this.close());
    call.on('error', () => this.close());
    if (call.cancelled) this.close();
  }

  /**
   * Applies one request to the stream state; throws MeshidError for requests that end the stream. Returns whether
   * the request may change what the client should hold (the first request, a subscription change). An ACK or NACK
   * alone changes nothing — new state arrives through the cache subscription — so it costs no recomputation, which
   * matters when a rotation is ACKed by a thousand streams at once.
   */
  protected abstract handleRequest(request: Req): boolean;

  /** The next response for the current state, updating what the stream believes the client holds; or nothing. */
  protected abstract nextResponse(snapshot: IdentitySnapshot): Res | undefined;

  /**
   * Whether the subscription names a secret that is missing only because the caller's SVID for it is being signed
   * (awaitsSigning): the first response waits for it.
   */
  protected abstract awaitsSigning(snapshot: IdentitySnapshot): boolean;

  /**
   * The names subscribed by name that resolved to nothing when nextResponse last ran: an array shared with other
   * streams (or a constant empty one), so that a stream whose names resolve spends nothing on it.
   */
  protected abstract unresolvedNames(): readonly string[];

  /** Whether the stream's subscription names `name` now. */
  protected abstract subscribes(name: string): boolean;

  /**
   * Called by nextResponse when it left part of what is due for a later response (response-size.ts): that response
   * is computed as soon as this one is written, as after a change that arrived during the write.
   */
  protected continueAfterWrite(): void {
    this.dirty = true;
  }

  /** Whether the client holds secrets of this stream; asked after a nextResponse that had nothing to send. */
  protected holdsSecrets(): boolean {
    return false;
  }

  /** Ends the stream with the status for `error` (a MeshidError keeps its code; anything else is INTERNAL). */
  fail(error: unknown): void {
    if (this.closed) return;
    if (isMeshidError(error) && error.code !== 'internal') {
      this.ctx.stats.rejectedRequests += REJECTED_REQUEST_CODES.has(error.code) ? 1 : 0;
      this.ctx.stats.deniedCalls += error.code === 'permission_denied' ? 1 : 0;
    }
    // A client opening streams only to have them refused in a loop must not write a line per stream.
    this.ctx.refused(error);
    const call = this.call!;
    this.close();
    call.emit('error', toServiceError(error));
  }

  /** Ends the stream with OK: when the client half-closed, and for every open stream at agent shutdown. */
  endOk(): void {
    if (this.closed) return;
    const call = this.call!;
    this.close();
    call.end();
  }

  /** The stream's logger already names its rpc and caller: `extra` adds only what the request says. */
  protected logNack(detail: RpcStatus, nonce: string, extra: Record<string, unknown>): void {
    this.ctx.stats.nacks++;
    this.ctx.log.warn(
      { nonce, code: detail.code ?? 0, detail: cutText(detail.message ?? '', MAX_LOGGED_DETAIL), ...extra },
      'Envoy rejected SDS secrets (NACK)',
    );
  }

  private receive(request: Req): void {
    if (this.closed) return;
    let changed: boolean;
    try {
      changed = this.handleRequest(request);
      this.started = true;
    } catch (error) {
      this.fail(error);
      return;
    }
    if (changed) this.pump();
  }

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    runSoon(this.pumpScheduled);
  }

  /** Writes the next response if there is one and no write is under way; otherwise remembers to look again. */
  protected pump(): void {
    if (this.closed || !this.started) return;
    if (this.writing) {
      if (!this.dirty) this.ctx.stats.coalescedUpdates++;
      this.dirty = true;
      return;
    }
    let response: Res | undefined;
    try {
      this.ctx.recheck?.();
      const snapshot = this.ctx.cache.snapshot(this.ctx.selectors);
      // Every entry of the caller is gone: like the Workload API, the stream ends (SPEC-NOTES §8). A caller that never
      // held one gets here only when verifiers are served, and is served validation contexts.
      if (snapshot.entitled) this.everEntitled = true;
      else if (this.everEntitled || !this.ctx.options.allowUnauthenticatedVerifiers) {
        throw permissionDenied('the caller is no longer entitled to any identity');
      }
      if (this.holdsFirstResponse(snapshot)) return;
      response = this.nextResponse(snapshot);
      this.noteWaiting(snapshot);
    } catch (error) {
      this.fail(isMeshidError(error) && error.code !== 'invalid_argument' ? error : internal('cannot build SDS secrets', error));
      return;
    }
    if (response === undefined) {
      // A client that resumed holding its secrets at their current versions is not warming: its first answer is
      // over, so a later push (a rotation) never waits for a sibling SVID being signed.
      if (!this.responded && this.holdsSecrets()) {
        this.responded = true;
        this.endSigningWait();
      }
      return;
    }
    if (!this.responded) {
      this.responded = true;
      this.endSigningWait();
    }
    this.writing = true;
    this.ctx.stats.responses++;
    this.call!.write(response, () => {
      this.writing = false;
      if (this.dirty) {
        this.dirty = false;
        this.pump();
      }
    });
  }

  /** Tells the log of waiting names what the stream waits for now: nothing to do when every name resolves. */
  private noteWaiting(snapshot: IdentitySnapshot): void {
    const unresolved = this.unresolvedNames();
    // The path of every stream on every rotation: no closure, no set, when nothing waits.
    if (unresolved.length === 0 && !this.ctx.waiting.active) return;
    const options = this.ctx.options;
    this.ctx.waiting.update(
      unresolved,
      (name) => awaitsSigning(snapshot, [name], false, options),
      (name) => this.subscribes(name),
    );
  }

  /**
   * Whether the first response waits, as the Workload API's first message does, for SVIDs of the caller still being
   * signed: until they are (the cache notifies), their signing fails, or the wait's time runs out (then it goes with
   * what there is, and the rest is pushed when signed). Only the first: later a name not yet resolving sends nothing
   * anyway, and a rotation must not wait for a sibling's new entry. The wait is per stream: other streams go on.
   */
  private holdsFirstResponse(snapshot: IdentitySnapshot): boolean {
    if (this.responded || this.signingWaitOver || !this.awaitsSigning(snapshot)) return false;
    if (this.signingWait === undefined) {
      const { clock, signingWaitMs, deadline } = this.ctx;
      const endAt = signingWaitEnd(clock, signingWaitMs, deadline);
      if (endAt <= clock.now()) return false;
      this.ctx.log.debug({ waitMs: endAt - clock.now() }, 'the first SDS response waits for SVIDs being signed');
      this.signingWait = clock.setTimer(() => {
        this.signingWait = undefined;
        this.signingWaitOver = true;
        this.pump();
      }, endAt - clock.now());
    }
    return true;
  }

  private endSigningWait(): void {
    this.signingWait?.cancel();
    this.signingWait = undefined;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.endSigningWait();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const onClose = this.onClose!;
    this.call = undefined;
    this.onClose = undefined;
    onClose();
  }
}
