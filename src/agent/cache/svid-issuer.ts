import type { Clock, TimerHandle } from '../../common/clock.js';
import { isMeshidError, type MeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { heldLifetime, renewalTime } from '../../common/rotation.js';
import { chainNamesKeyId } from '../../common/x509/chain-verification.js';
import { OutageLog } from '../../common/outage-log.js';
import { Backoff, backoffDelay, retryCapWithin, type BackoffPolicy } from '../client/backoff.js';
import { budgetRefusalWaitMs } from '../client/budget-refusal.js';
import { rejectionOf, type Rejection } from '../client/rejection.js';
import { certificateInputs, type AgentEntry } from './agent-entry.js';
import type { IdentityCache } from './identity-cache.js';
import type { WorkloadSvid } from './workload-cache.js';
import { UnsignedKeys } from './unsigned-keys.js';
import { CallRetryRound } from './call-retry-round.js';
import { catchUpOrder } from './catch-up-order.js';
import { unanchoredSvids } from './unanchored-svids.js';
import { X509BudgetHold } from './x509-budget-hold.js';
import { BatchBuilder, CaChainBytes, checkedSvid, expectedAnswerBytes, SIGN_ANSWER_BYTES, type BuiltBatch } from './x509-svid-request.js';

/** One item of a SignX509Svids answer. `code` 0 = signed; otherwise a gRPC status code for this item. */
export interface SignedItem {
  readonly entryId: string;
  readonly code: number;
  readonly message: string;
  readonly chain: readonly Buffer[];
}

/** SignX509Svids on the server: throws a MeshidError when the whole call fails. */
export type X509Signer = (items: ReadonlyArray<{ entryId: string; csr: Buffer }>) => Promise<SignedItem[]>;

export interface SvidIssuerOptions {
  cache: IdentityCache;
  sign: X509Signer;
  clock: Clock;
  log: Logger;
  /** Rotation jitter source, [0, 1); default Math.random. */
  random?: () => number;
  /** CSRs per SignX509Svids call (the server takes up to 1000). */
  batchSize?: number;
  /** SignX509Svids calls in flight at once. */
  maxInflight?: number;
  retryBackoff?: BackoffPolicy;
  /** The server refused the agent itself (must re-attest, banned): the connection decides what happens next. */
  onRejected?: (kind: Rejection, err: MeshidError) => void;
  /**
   * Each SVID the server signed for an entry still wanted, before it is checked: its validity and when the request
   * went out, for the agent to read the clocks' skew from (ServerClock.observe). Every leaf, not one a batch: entries'
   * TTLs differ, and one shorter than a skew ahead expires here on arrival while the others are accepted. A throw in
   * it is logged, never an SVID's failure.
   */
  onSigned?: (leaf: { notBefore: number; notAfter: number }, sentAt: number) => void;
}

const GRPC_INVALID_ARGUMENT = 3;
const GRPC_PERMISSION_DENIED = 7;

/** An item of a signing answer that brought no SVID: refused by the server (its code), or failing the agent's checks (-1). */
interface FailedItem {
  readonly entry: AgentEntry;
  readonly code: number;
  readonly message: string;
}

/** Retrying a failed item or call: 1 s doubling to 5 min. */
const RETRY_BACKOFF: BackoffPolicy = Object.freeze({ initialMs: 1000, maxMs: 300_000, multiplier: 2 });

/**
 * A first Workload API message waits for an SVID through one failed signing (a transient refusal is retried in about
 * a second), not through a second: a refusal that persists would otherwise hold the workload's other identities back
 * until the stream's pending timeout, then refuse the stream, and do so again on every retry.
 */
const FAILURES_WAITED_FOR = 1;

/**
 * Gets an X.509-SVID signed for every entry that needs one and keeps them fresh (SPEC-NOTES §8 rotation):
 * a new P-256 key per SVID, generated here and never sent anywhere (kept across the failed attempts to get that SVID
 * signed: unsigned-keys.ts); CSRs go to the server in batches
 * (SignX509Svids); each returned chain is checked (one URI SAN equal to the entry's ID, the key matches, the chain
 * verifies against the own bundle) before it is published to the cache.
 *
 * Scheduling is one timer on the injected clock for the earliest "due" instant over all entries: an SVID's renewal
 * time (half the life it is held for, from its request, ± jitter chosen once per SVID, at once when already past it,
 * `renewalTime` of `heldLifetime`), or the retry time of a failed item (within a quarter of the time its served SVID
 * has left: RETRY_WITHIN_LEFT). Due entries are queued; the queue is flushed in batches with a bounded number of calls
 * in flight.
 */
export class SvidIssuer {
  private readonly cache: IdentityCache;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly batchSize: number;
  private readonly maxInflight: number;
  private readonly sign: X509Signer;
  /** Entries waiting for the next batch, in the order they go. */
  private queued = new Set<string>();
  /** Entries in a call right now, with the certificate inputs that call asks for. */
  private readonly inflight = new Map<string, string>();
  /** When each entry with an SVID (or a failed attempt) next needs signing. */
  private readonly dueAt = new Map<string, number>();
  /** Consecutive failures per entry, for its retry delay. */
  private readonly failures = new Map<string, number>();
  /** The wait for the server's signing budget after a refusal (X509BudgetHold). */
  private readonly budget: X509BudgetHold;
  /** When the entries held back by failed calls are retried, all together (CallRetryRound). */
  private readonly callRetry: CallRetryRound;
  /** The rotation jitter of each entry's current SVID, chosen once per SVID (per version). */
  private readonly jitter = new Map<string, { version: string; value: number }>();
  private readonly retryPolicy: BackoffPolicy;
  private tainted: ReadonlySet<string> = new Set();
  private readonly unsignedKeys = new UnsignedKeys();
  private readonly builder = new BatchBuilder(this.unsignedKeys);
  private readonly caChainBytes = new CaChainBytes();
  private calls = 0;
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;
  private flushScheduled = false;
  private stopped = false;
  /** Signing calls failing while the server is down, refusing or out of budget: told once, not per retry. */
  private readonly signingFailures: OutageLog;

  constructor(private readonly options: SvidIssuerOptions) {
    this.cache = options.cache;
    this.clock = options.clock;
    this.log = options.log;
    this.signingFailures = new OutageLog(options.log, options.clock);
    this.sign = options.sign;
    this.random = options.random ?? Math.random;
    this.batchSize = options.batchSize ?? 250;
    this.maxInflight = options.maxInflight ?? 4;
    this.retryPolicy = options.retryBackoff ?? RETRY_BACKOFF;
    this.callRetry = new CallRetryRound(new Backoff(this.retryPolicy, this.random));
    this.budget = new X509BudgetHold(options.cache.signingBudget, options.clock);
  }

  /** Entries that need an SVID now (new, or their certificate inputs changed). */
  request(entries: readonly AgentEntry[]): void {
    for (const e of entries) {
      // Already being signed for these inputs (a selector or hint change of an entry still waiting for its SVID): the
      // answer is for its current state and is taken; queued again, the entry was signed twice.
      if (this.inflight.get(e.id) === certificateInputs(e)) continue;
      this.dueAt.delete(e.id);
      this.failures.delete(e.id);
      this.budget.forget(e.id);
      this.queued.add(e.id);
    }
    this.scheduleFlush();
  }

  /** Entries that are gone: nothing more is signed for them. */
  forget(entryIds: readonly string[]): void {
    for (const id of entryIds) {
      this.queued.delete(id);
      this.dueAt.delete(id);
      this.failures.delete(id);
      this.budget.forget(id);
      this.jitter.delete(id);
      this.unsignedKeys.forget(id);
    }
  }

  /**
   * Schedules renewal of every SVID the cache holds and queues every entry without one, or whose SVID was signed for
   * other certificate inputs (a TTL or DNS change whose new SVID had not arrived when the agent stopped): used at
   * start-up after state was restored, and after a (re)connect.
   */
  reconcile(): void {
    for (const entry of this.cache.entries()) {
      const svid = this.cache.svid(entry.id);
      if (this.inflight.has(entry.id) || this.queued.has(entry.id)) continue;
      if (svid === undefined || (svid.inputs !== undefined && svid.inputs !== certificateInputs(entry))) {
        this.dueAt.delete(entry.id);
        this.queued.add(entry.id);
      } else if (!this.dueAt.has(entry.id)) this.dueAt.set(entry.id, this.renewalOf(svid));
    }
    this.armTimer();
    this.scheduleFlush();
  }

  /** After the connection to the server came back: retry failed entries now instead of at their backoff time. */
  kick(): void {
    this.callRetry.reset();
    for (const id of this.failures.keys()) {
      this.dueAt.delete(id);
      this.queued.add(id);
    }
    this.scheduleFlush();
  }

  /**
   * The complete set of tainted authority key IDs (SyncUpdate.tainted_authority_ids): every SVID whose chain holds a
   * certificate with one of them as subject or authority key ID is re-signed at once.
   */
  setTainted(keyIds: readonly string[]): void {
    const next = new Set(keyIds.map((k) => k.toLowerCase()));
    const added = [...next].some((k) => !this.tainted.has(k));
    this.tainted = next;
    if (!added) return;
    const affected = this.cache.allSvids().filter((s) => this.chainIsTainted(s));
    this.resignNow(affected, 'authorities were tainted; re-signing the SVIDs that chain to them');
  }

  /**
   * The own bundle changed: every SVID whose issuers no longer chain to it is re-signed at once, as a tainted one is.
   * Taints cover the agents that were connected; this covers one that was away while a root was tainted and revoked
   * (it never heard of the taint, and the revoked root is in no taint list any more), which would otherwise serve
   * SVIDs no peer can verify until their half-life (unanchoredSvids).
   */
  resignUnanchored(roots: readonly Buffer[]): void {
    if (roots.length === 0) return;
    const affected = unanchoredSvids(this.cache.allSvids(), roots, this.clock.now());
    this.resignNow(affected, 'SVIDs no longer chain to the trust bundle (a root left it while this agent was away); re-signing them');
  }

  private resignNow(svids: readonly WorkloadSvid[], why: string): void {
    // An entry whose signing is out is not queued again: its answer is checked against the taints and the bundle as
    // they are when it comes (chainIsTainted, checkedSvid) and re-signed then if it must be. Queued, it was signed
    // twice, and every bundle update during a mass re-sign (a root revoked) added a call per entry in flight.
    svids = svids.filter((s) => !this.inflight.has(s.entryId));
    if (svids.length === 0) return;
    this.log.warn({ count: svids.length }, why);
    for (const s of svids) {
      this.dueAt.delete(s.entryId);
      this.queued.add(s.entryId);
    }
    this.scheduleFlush();
  }

  /** Pending work, for status and tests. */
  pending(): { queued: number; inflight: number; failing: number } {
    return { queued: this.queued.size, inflight: this.inflight.size, failing: this.failures.size };
  }

  /** Entries the issuer keeps a renewal or retry time, a failure count or a rotation jitter for (for tests). */
  trackedEntries(): number {
    return new Set([...this.dueAt.keys(), ...this.failures.keys(), ...this.jitter.keys()]).size;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.budget.stop();
    this.unsignedKeys.clear();
    this.cache.signingEnded();
  }

  /**
   * `askedAt`: when the request for this SVID went out, for one signed now (heldLifetime: its backdated notBefore would
   * put the renewal of a TTL of 10 s or less before its arrival). A restored SVID has none: its notBefore is used.
   */
  private renewalOf(svid: WorkloadSvid, askedAt?: number): number {
    let j = this.jitter.get(svid.entryId);
    if (j?.version !== svid.version) {
      j = { version: svid.version, value: (this.random() * 2 - 1) * 0.1 };
      this.jitter.set(svid.entryId, j);
    }
    const lifetime = { notBefore: svid.notBefore, notAfter: svid.notAfter };
    return renewalTime(askedAt === undefined ? lifetime : heldLifetime(lifetime, askedAt), j.value);
  }

  /**
   * The longest retry delay for an entry whose served SVID ends at `notAfter` (backoff.ts retryCapWithin); Infinity if
   * none.
   */
  private retryCapMs(notAfter: number | undefined, now: number): number {
    return retryCapWithin(notAfter, now, this.retryPolicy);
  }

  private chainIsTainted(svid: WorkloadSvid): boolean {
    return chainNamesKeyId(svid.chain, this.tainted);
  }

  private armTimer(): void {
    if (this.stopped) return;
    let next = Infinity;
    for (const t of this.dueAt.values()) if (t < next) next = t;
    if (next === this.timerAt) return;
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = next;
    if (next === Infinity) return;
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.queueDue();
    }, Math.max(0, next - this.clock.now()));
  }

  private queueDue(): void {
    const now = this.clock.now();
    for (const [id, t] of this.dueAt) {
      if (t > now) continue;
      this.dueAt.delete(id);
      this.queued.add(id);
    }
    this.armTimer();
    this.flush();
  }

  /** Coalesces requests made in one turn of the event loop into one batch. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.stopped) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.heldByBudget()) return;
    if (this.queued.size > this.batchSize && this.calls < this.maxInflight) {
      this.queued = catchUpOrder(this.queued, this.cache.entriesInUse(), (id) => this.cache.svid(id)?.notAfter) ?? this.queued;
    }
    while (!this.stopped && this.queued.size > 0 && this.calls < this.maxInflight) {
      const batch: AgentEntry[] = [];
      const caChainBytes = this.caChainBytes.estimate(this.cache.ownBundle());
      let answerBytes = 0;
      for (const id of this.queued) {
        // An entry already in a call stays queued: that call's answer is for its previous state.
        if (this.inflight.has(id)) continue;
        const entry = this.cache.entry(id);
        if (entry === undefined) {
          this.queued.delete(id);
          continue;
        }
        // Bounded by the answer's expected size too (SIGN_ANSWER_BYTES): an entry that would take it past goes in the
        // next call, and one larger on its own goes alone.
        const bytes = expectedAnswerBytes(entry, caChainBytes);
        if (batch.length > 0 && answerBytes + bytes > SIGN_ANSWER_BYTES) break;
        this.queued.delete(id);
        batch.push(entry);
        answerBytes += bytes;
        if (batch.length >= this.batchSize) break;
      }
      if (batch.length === 0) return;
      this.calls++;
      for (const e of batch) this.inflight.set(e.id, certificateInputs(e));
      void this.signBatch(batch).finally(() => {
        this.calls--;
        for (const e of batch) this.inflight.delete(e.id);
        this.armTimer();
        this.flush();
      });
    }
  }

  /**
   * Whether the queue waits for the signing budget the server said was spent; then it is flushed when the wait is
   * over. Entries queued meanwhile count as refused from now for a first message's wait (X509BudgetHold.waitedFor), as
   * they would have been had they gone out.
   */
  private heldByBudget(): boolean {
    const now = this.clock.now();
    const until = this.budget.until();
    if (this.stopped || this.queued.size === 0 || now >= until) return false;
    const held = [...this.queued].flatMap((id) => this.cache.entry(id) ?? []);
    this.cache.markUnsigned(held.filter((e) => !this.budget.waitedFor(e.id, now, until)).map((e) => e.id));
    this.budget.wakeAfter(until - now, () => this.flush());
    return true;
  }

  private async signBatch(batch: readonly AgentEntry[]): Promise<void> {
    let keys: BuiltBatch['keys'];
    let results: SignedItem[];
    let sentAt: number;
    try {
      const built = await this.builder.buildInTurn(batch);
      // Stopped while its keys were made (a shutdown, a ban, a must-re-attest): the answer would be of no use, and the
      // call would spend the server's signing budget.
      if (this.stopped) return;
      keys = built.keys;
      sentAt = this.clock.now();
      results = await this.sign(built.items);
    } catch (err) {
      // Stopped while the call was out (the agent shutting down closes its channel): nothing is retried any more, and
      // the cache waits for nothing (signingEnded). A 'will retry' line would follow 'meshid-agent stopped'.
      if (this.stopped) return;
      const budgetWait = budgetRefusalWaitMs(err);
      const now = this.clock.now();
      const kind = rejectionOf(err);
      // An entry removed while the call was out needs nothing more (forget() already dropped its state); one changed
      // meanwhile was requested again (queued, its failures reset): this call's failure is not its own, and counting
      // it would stop a first message waiting for the new certificate at its first failure.
      const same = batch.filter((e) => {
        const current = this.cache.entry(e.id);
        return current !== undefined && certificateInputs(current) === certificateInputs(e);
      });
      // The batch's soonest-expiring served SVID bounds its retry (retryCapWithin). Not for a refusal of the agent
      // itself: it waits for kick() after a new attestation, and trying sooner changes nothing.
      const cap = kind !== undefined ? Infinity : Math.min(Infinity, ...same.map((e) => this.retryCapMs(this.cache.svid(e.id)?.notAfter, now)));
      // No sooner than the server asked, spread over the second after that: the agents a storm's refusals told the
      // same wait do not all come back at once.
      const asked = budgetWait === undefined ? undefined : budgetWait + Math.round(this.random() * 1000);
      const delay = this.callRetry.delayAfterFailure(now, cap, asked);
      if (asked !== undefined) this.budget.refused(now, asked, delay);
      for (const e of same) {
        this.failures.set(e.id, (this.failures.get(e.id) ?? 0) + 1);
        this.dueAt.set(e.id, now + delay);
      }
      // The server unreachable (or refusing this agent), a failure that came back, or a budget refusal that has lasted
      // too long: the cached SVIDs are served without waiting for these. Entries changed meanwhile are being signed
      // again, and are waited for.
      const unreachable = kind !== undefined || isMeshidError(err, 'unavailable');
      const waitedFor = (e: AgentEntry): boolean => {
        if (unreachable) return false;
        if (budgetWait === undefined) return (this.failures.get(e.id) ?? 0) <= FAILURES_WAITED_FOR;
        return this.budget.waitedFor(e.id, now, now + delay);
      };
      this.cache.markUnsigned(same.filter((e) => !waitedFor(e)).map((e) => e.id));
      if (kind !== undefined) {
        // The agent itself is refused; the entries wait (kick() brings them back after a new attestation).
        this.options.onRejected?.(kind, err as MeshidError);
        return;
      }
      // An outage or a budget is no fault of the agent's: its reason says all, a stack trace nothing.
      const expected = unreachable || budgetWait !== undefined;
      this.signingFailures.failed(
        unreachable ? 'unreachable' : budgetWait !== undefined ? 'budget' : 'error',
        expected ? 'warn' : 'error',
        { ...(expected ? { reason: (err as Error).message } : { err }), entries: batch.length, retryInMs: delay },
        'cannot get X509-SVIDs signed; will retry',
      );
      return;
    }
    this.callRetry.reset();
    const recovered = this.signingFailures.recovered();
    if (recovered !== undefined) this.log.info(recovered, 'X509-SVIDs are signed again');
    const issued: WorkloadSvid[] = [];
    const now = this.clock.now();
    const answered = new Set<string>();
    const failed: FailedItem[] = [];
    for (const r of results) {
      const k = keys.get(r.entryId);
      if (k === undefined || answered.has(r.entryId)) continue;
      answered.add(r.entryId);
      // Certified, whatever becomes of the answer: a key is not sent twice once a certificate for it came back. Nor a
      // CSR the server called invalid (a corrupted one would otherwise be refused on every retry until a restart).
      if (r.code === 0 || r.code === GRPC_INVALID_ARGUMENT) this.unsignedKeys.retire(r.entryId, k);
      if (r.code === 0) this.caChainBytes.observe(r.chain);
      const current = this.cache.entry(r.entryId);
      // The entry went away or changed while the call was in flight: its new state is already queued.
      if (current === undefined || certificateInputs(current) !== k.inputs) continue;
      if (r.code !== 0) {
        failed.push({ entry: current, code: r.code, message: r.message });
        continue;
      }
      try {
        const svid = checkedSvid(current, r.chain, k, now, (leaf) => this.observeSigned(leaf, sentAt, current), this.cache);
        issued.push(svid);
        this.budget.forget(current.id);
        if (this.chainIsTainted(svid)) {
          // Signed before the taint reached the server, answered after it reached this agent: valid, so served, but
          // replaced at once (and with backoff, should the server go on answering from that authority).
          const n = (this.failures.get(current.id) ?? 0) + 1;
          this.failures.set(current.id, n);
          this.dueAt.set(current.id, n === 1 ? now : now + backoffDelay(n - 2, this.retryPolicy, this.random, this.retryCapMs(svid.notAfter, now)));
        } else {
          this.failures.delete(current.id);
          this.dueAt.set(current.id, this.renewalOf(svid, sentAt));
        }
        this.log.debug(
          { entryId: svid.entryId, spiffeId: svid.spiffeId, serial: svid.version, notAfter: new Date(svid.notAfter).toISOString(), renewAt: new Date(this.dueAt.get(current.id)!).toISOString() },
          'X509-SVID issued',
        );
      } catch (err) {
        failed.push({ entry: current, code: -1, message: (err as Error).message });
      }
    }
    for (const e of batch) {
      if (!answered.has(e.id) && this.cache.entry(e.id) !== undefined) failed.push({ entry: e, code: -1, message: 'the server did not answer for this entry' });
    }
    this.itemsFailed(failed);
    if (issued.length > 0) {
      this.cache.putSvids(issued);
      // At info, as SPIRE's agent tells its renewals: an operator sees that rotation happens, and when it next does
      // (each SVID's serial, expiry and renewal are in its own line, at debug).
      const nextRenewalAt = Math.min(...issued.map((svid) => this.dueAt.get(svid.entryId) ?? Infinity));
      this.log.info({ count: issued.length, ...(Number.isFinite(nextRenewalAt) && { nextRenewalAt: new Date(nextRenewalAt).toISOString() }) }, 'X509-SVIDs issued');
    }
  }

  /**
   * The failed items of one answer come back together, at the soonest retry any of them needs, as the entries of a
   * failed call share a retry round (CallRetryRound): on their own jitter each would come back as a call of its own
   * (a CA that refuses every item, 250 calls where one would do). Sooner than an item's own backoff at most, never
   * later than its bound. A refusal to sign for an entry at all keeps its own backoff: retrying it sooner would not
   * change the answer.
   */
  private itemsFailed(failed: readonly FailedItem[]): void {
    const now = this.clock.now();
    const planned = failed.map((f) => {
      const n = (this.failures.get(f.entry.id) ?? 0) + 1;
      // Nor is a refusal to sign for this entry at all retried sooner for the SVID it still has.
      const cap = f.code === GRPC_PERMISSION_DENIED ? Infinity : this.retryCapMs(this.cache.svid(f.entry.id)?.notAfter, now);
      return { ...f, n, wait: backoffDelay(n - 1, this.retryPolicy, this.random, cap) };
    });
    const shared = Math.min(...planned.filter((p) => p.code !== GRPC_PERMISSION_DENIED).map((p) => p.wait));
    for (const p of planned) this.itemFailed(p.entry, p.code, p.message, p.n, p.code === GRPC_PERMISSION_DENIED ? p.wait : shared, now);
  }

  private itemFailed(entry: AgentEntry, code: number, message: string, n: number, wait: number, now: number): void {
    if (code === GRPC_PERMISSION_DENIED) {
      // Not authorized for this agent (any more): the Sync stream will remove the entry; do not hammer the server.
      this.log.info({ entryId: entry.id, spiffeId: entry.spiffeId, reason: message }, 'the server refused to sign an SVID for this entry');
    }
    this.failures.set(entry.id, n);
    this.dueAt.set(entry.id, now + wait);
    const current = this.cache.entry(entry.id);
    if (n > FAILURES_WAITED_FOR && current !== undefined && certificateInputs(current) === certificateInputs(entry)) this.cache.markUnsigned([entry.id]);
    if (code !== GRPC_PERMISSION_DENIED) {
      this.log.warn({ entryId: entry.id, spiffeId: entry.spiffeId, code, reason: message, retryInMs: wait }, 'X509-SVID not issued; will retry');
    }
  }

  private observeSigned(leaf: { notBefore: number; notAfter: number }, sentAt: number, entry: AgentEntry): void {
    try {
      this.options.onSigned?.(leaf, sentAt);
    } catch (err) {
      // Only a reading of the clocks' skew: a fault in it must not cost the workload an SVID that passes its checks.
      this.log.error({ err, entryId: entry.id }, 'reading the clock skew from a signed SVID failed; the SVID is checked and served as usual');
    }
  }
}
