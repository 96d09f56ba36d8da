import type { Clock, TimerHandle } from '../../common/clock.js';
import { permissionDenied, unavailable } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { Selector } from '../../common/spiffe/selector.js';
import { certificateInputs, type AgentEntry } from './agent-entry.js';
import { sameWorkloadView, type AppliedUpdate, type CacheUpdate } from './cache-update.js';
import { EntryIndex, selectorSet, workloadKey } from './entry-index.js';
import { checkedJwtSigner, jwtSvidFailure, tokenKeyId } from './jwt-svid-checks.js';
import { JwtSvidCache, type JwtSigner } from './jwt-svid-cache.js';
import { SigningBudgetWait } from './signing-budget-wait.js';
import type { IdentitySnapshot, JwtSvidResult, WorkloadCache, WorkloadSvid } from './workload-cache.js';
import { callListener, WorkloadSubscriptions } from './workload-subscriptions.js';

export interface IdentityCacheOptions {
  clock: Clock;
  log: Logger;
  /** SignJwtSvid on the server; failures are MeshidErrors (unavailable when the server cannot be reached). */
  signJwtSvid: JwtSigner;
  jwtCacheSize?: number;
  /** Jitter of JWT-SVID retries after a budget refusal, [0, 1); default Math.random. */
  random?: () => number;
}

/** The `signing` (and `withoutSvid`) of every snapshot with nothing missing: one object, not one per snapshot. */
const NO_SPIFFE_IDS: ReadonlySet<string> = new Set();

/** Distinct selector sets memoized per generation; more means a host with very many workloads: start over. */
const MAX_MEMOIZED_SNAPSHOTS = 10_000;
/** How many SPIFFE IDs the one expiry warning names; the rest are counted. */
const EXPIRED_NAMED = 5;

/**
 * The agent's identity cache: the entries it is authorized for, the own and federated bundles, and the X.509-SVID
 * issued for each entry. Implements the WorkloadCache seam the Workload API and SDS are built against; the agent
 * core feeds it (`apply`, `putSvids`) and it tells subscribed streams about every change that may concern them.
 *
 * Serving rules: an SVID is served only to workloads matching its entry (every entry selector among the workload's),
 * only while it has not expired (`clock`), and only while the entry still has the SPIFFE ID it was issued for.
 */
export class IdentityCache implements WorkloadCache {
  private readonly index = new EntryIndex();
  private readonly svids = new Map<string, WorkloadSvid>();
  /** Entries whose SVID could not be signed and is being retried (markUnsigned): not waited for (`complete`). */
  private readonly unsigned = new Set<string>();
  private own: TrustBundle | undefined;
  private federated = new Map<string, TrustBundle>();
  private readonly subscriptions: WorkloadSubscriptions;
  private readonly changeListeners = new Set<(entryIds: readonly string[]) => void>();
  private readonly jwt: JwtSvidCache;
  /** The server's signing budget's wait, one for X.509 (svid-issuer.ts) and JWT signing, as the budget is one. */
  readonly signingBudget: SigningBudgetWait;
  private readonly clock: Clock;
  private readonly log: Logger;
  private isReady = false;
  private isSynced = false;
  /** No SVID is signed any more (signingEnded): an entry without one is waited for by nobody. */
  private signingOver = false;
  /** Memoized per selector set, each valid for one generation of the subscriptions (a change notified) at most. */
  private readonly snapshots = new Map<string, { generation: number; validUntil: number; snapshot: IdentitySnapshot }>();
  private expiryTimer: TimerHandle | undefined;
  private expiryAt = Infinity;

  constructor(options: IdentityCacheOptions) {
    this.clock = options.clock;
    this.log = options.log;
    this.subscriptions = new WorkloadSubscriptions(options.log);
    this.signingBudget = new SigningBudgetWait(options.clock);
    this.jwt = new JwtSvidCache(
      checkedJwtSigner(options.signJwtSvid, {
        spiffeIdOf: (entryId) => this.index.get(entryId)?.spiffeId,
        holdsJwtKey: (kid) => this.holdsJwtKey(kid),
      }),
      this.clock,
      options.jwtCacheSize,
      options.random,
      this.signingBudget,
      this.log,
    );
  }

  private holdsJwtKey(kid: string | undefined): boolean {
    return kid !== undefined && this.own !== undefined && this.own.jwtAuthorities.some((k) => k.kid === kid);
  }

  // ---- WorkloadCache (the handlers' side) ----

  ready(): boolean {
    return this.isReady && this.own !== undefined;
  }

  synced(): boolean {
    return this.isSynced;
  }

  snapshot(selectors: readonly Selector[]): IdentitySnapshot {
    // Many streams of one workload (an Envoy's SDS streams, a thousand sidecars of one service) ask for the same
    // state after every change: compute it once per change and selector set. An entry is reused until the next
    // change or until one of its SVIDs expires, whichever comes first.
    const key = workloadKey(selectors);
    const now = this.clock.now();
    const hit = this.snapshots.get(key);
    if (hit !== undefined && hit.generation === this.subscriptions.generation && now < hit.validUntil) return hit.snapshot;
    const snapshot = this.computeSnapshot(selectors, now);
    if (this.snapshots.size >= MAX_MEMOIZED_SNAPSHOTS) this.snapshots.clear();
    let validUntil = Infinity;
    for (const svid of snapshot.svids) validUntil = Math.min(validUntil, svid.notAfter);
    this.snapshots.set(key, { generation: this.subscriptions.generation, validUntil, snapshot });
    return snapshot;
  }

  private computeSnapshot(selectors: readonly Selector[], now: number): IdentitySnapshot {
    const own = this.requireBundle();
    const matching = this.index.matching(selectorSet(selectors));
    const svids: WorkloadSvid[] = [];
    let signing: Set<string> | undefined;
    let withoutSvid: Set<string> | undefined;
    for (const e of matching) {
      const svid = this.svids.get(e.id);
      if (svid !== undefined && svid.notAfter > now) {
        svids.push(svid);
        continue;
      }
      (withoutSvid ??= new Set()).add(e.spiffeId);
      if (!this.signingOver && !this.unsigned.has(e.id)) (signing ??= new Set()).add(e.spiffeId);
    }
    const domains = [...new Set(matching.flatMap((e) => e.federatesWith))].filter((td) => td !== own.trustDomain).sort();
    const federatedBundles: TrustBundle[] = [];
    for (const td of domains) {
      const b = this.federated.get(td);
      if (b !== undefined) federatedBundles.push(b);
    }
    const oldest = matching[0];
    const defaultSvid = oldest !== undefined && svids[0]?.entryId === oldest.id ? svids[0] : undefined;
    const defaultSigning = oldest !== undefined && defaultSvid === undefined && !this.signingOver && !this.unsigned.has(oldest.id);
    return {
      entitled: matching.length > 0,
      svids,
      defaultSvid,
      complete: signing === undefined,
      signing: signing ?? NO_SPIFFE_IDS,
      withoutSvid: withoutSvid ?? NO_SPIFFE_IDS,
      defaultSigning,
      bundle: own,
      federatedBundles,
    };
  }

  subscribe(selectors: readonly Selector[], listener: () => void): () => void {
    return this.subscriptions.subscribe(selectors, listener);
  }

  /**
   * A token per entry the caller matches. An entry that changes or goes while its token is signed makes the answer
   * void (the server signs for the entry as it is then): the call starts over once with the new state, then fails
   * UNAVAILABLE. A signing budget refusal is waited out up to `deadline`, and no longer than `signal` stays unaborted
   * (JwtSvidCache.fetch).
   */
  async fetchJwtSvids(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
    deadline = Infinity,
    signal?: AbortSignal,
  ): Promise<JwtSvidResult[]> {
    for (let attempt = 0; ; attempt++) {
      if (!this.ready()) throw unavailable('the agent has no identity state to serve yet');
      const matching = this.index.matching(selectorSet(selectors)).filter((e) => spiffeId === undefined || e.spiffeId === spiffeId);
      if (matching.length === 0) {
        throw permissionDenied(spiffeId === undefined ? 'no registration entry matches the caller' : `the caller is not entitled to ${spiffeId}`);
      }
      const settled = await Promise.allSettled(matching.map((e) => this.jwt.fetch(e.id, audience, deadline, signal)));
      if (matching.some((e) => this.index.get(e.id) !== e)) {
        if (attempt === 0) continue;
        throw unavailable('registration entries of the caller changed while their JWT-SVIDs were signed; retry');
      }
      const results: JwtSvidResult[] = [];
      let failure: { entry: AgentEntry; reason: unknown } | undefined;
      settled.forEach((r, i) => {
        const e = matching[i]!;
        if (r.status === 'fulfilled') results.push({ spiffeId: e.spiffeId, hint: e.hint, token: r.value.token, expiresAt: r.value.expiresAt });
        else {
          this.log.warn({ entryId: e.id, spiffeId: e.spiffeId, err: r.reason }, 'cannot get a JWT-SVID for an entry');
          failure ??= { entry: e, reason: r.reason };
        }
      });
      // All or nothing (WL-API §6.2.1: every identity of the caller): a partial list could start with another
      // identity than the default, and clients take svids[0].
      if (failure !== undefined) throw jwtSvidFailure(failure.entry, failure.reason);
      return results;
    }
  }

  // ---- the agent core's side ----

  /** From now on the cache answers workloads: state was restored from disk or the first sync was applied. */
  markReady(): void {
    if (this.isReady) return;
    this.isReady = true;
    this.subscriptions.notifyAll();
  }

  /** The entries are the server's since this start (synced()): a sync was applied, or a ban withdrew them all. */
  markSynced(): void {
    this.isSynced = true;
  }

  /**
   * The agent attested again under another agent ID: the entries held were the old identity's, not the server's word
   * for this one, until its first Sync answer (markSynced). Meanwhile a caller none of them matches may be the new
   * agent's, and is told to retry (UNAVAILABLE), not refused for good.
   */
  markUnsynced(): void {
    this.isSynced = false;
  }

  entry(id: string): AgentEntry | undefined {
    return this.index.get(id);
  }

  entries(): AgentEntry[] {
    return [...this.index.values()];
  }

  /** How many entries the cache holds, without copying them (status, health probes). */
  get entryCount(): number {
    return this.index.size;
  }

  /** How many SVIDs the cache holds, without copying them. */
  get svidCount(): number {
    return this.svids.size;
  }

  svid(entryId: string): WorkloadSvid | undefined {
    return this.svids.get(entryId);
  }

  allSvids(): WorkloadSvid[] {
    return [...this.svids.values()];
  }

  /** IDs of the entries some open stream's workload matches: whose SVIDs are being watched right now. */
  entriesInUse(): Set<string> {
    const ids = new Set<string>();
    for (const workload of this.subscriptions.workloads()) for (const e of this.index.matching(workload)) ids.add(e.id);
    return ids;
  }

  ownBundle(): TrustBundle | undefined {
    return this.own;
  }

  federatedBundles(): TrustBundle[] {
    return [...this.federated.values()];
  }

  /** The earliest NotAfter among the SVIDs held, or undefined when there are none. */
  oldestSvidExpiry(): number | undefined {
    let min: number | undefined;
    for (const s of this.svids.values()) if (min === undefined || s.notAfter < min) min = s.notAfter;
    return min;
  }

  /**
   * Called after every change of what the cache holds (for persistence), with the IDs of the entries whose entry or
   * SVID changed (added, replaced, removed, expired); a change of the bundles alone names none. Persistence saves
   * what these name instead of comparing every entry and SVID (StatePersister.saveChanged).
   */
  onChange(listener: (entryIds: readonly string[]) => void): () => void {
    this.changeListeners.add(listener);
    return () => void this.changeListeners.delete(listener);
  }

  /**
   * Applies entries, removals and bundles. A changed SPIFFE ID drops the entry's SVID at once (it names another
   * identity now); other certificate changes keep serving the old SVID until the new one arrives.
   */
  apply(update: CacheUpdate): AppliedUpdate {
    /** Entries whose change workloads can see; `stored` also counts changes only persistence cares about. */
    const touched: AgentEntry[] = [];
    let stored = false;
    let withdraws = false;
    const withdrawnEntryIds: string[] = [];
    const needSvid: AgentEntry[] = [];
    const removed: AgentEntry[] = [];
    for (const id of update.removed ?? []) {
      const gone = this.index.remove(id);
      if (gone === undefined) continue;
      this.svids.delete(id);
      this.unsigned.delete(id);
      this.jwt.dropEntry(id);
      removed.push(gone);
      touched.push(gone);
      withdrawnEntryIds.push(id);
    }
    for (const entry of update.upserts ?? []) {
      const previous = this.index.upsert(entry);
      stored = true;
      if (previous === undefined) {
        touched.push(entry);
        needSvid.push(entry);
        continue;
      }
      // A change of what only the next certificate carries (DNS names, TTLs) leaves every workload's view as it
      // is until the new SVID arrives (putSvids notifies then): telling a thousand streams now would make each
      // recompute an unchanged state.
      if (!sameWorkloadView(previous, entry)) {
        touched.push(entry, previous);
        withdraws = true;
        withdrawnEntryIds.push(entry.id);
      }
      this.jwt.dropEntry(entry.id);
      const svid = this.svids.get(entry.id);
      if (svid !== undefined && previous.spiffeId !== entry.spiffeId) this.svids.delete(entry.id);
      else if (svid !== undefined && svid.hint !== entry.hint) this.svids.set(entry.id, { ...svid, hint: entry.hint });
      if (certificateInputs(previous) !== certificateInputs(entry) || !this.svids.has(entry.id)) needSvid.push(entry);
    }
    // A new or changed certificate is to be signed again: waited for again, until that signing fails too.
    for (const e of needSvid) this.unsigned.delete(e.id);
    let everyone = false;
    if (removed.length > 0) withdraws = true;
    if (update.bundle !== undefined) {
      this.own = update.bundle;
      // A key that left the bundle (tainted) fails every token it signed, everywhere: stop handing those out now,
      // not at their half-life, and not in the outage fallback either.
      this.jwt.dropTokens((jwt) => !this.holdsJwtKey(tokenKeyId(jwt.token)));
      everyone = true;
      withdraws = true;
    }
    if (update.federatedBundles !== undefined) {
      this.federated = new Map(update.federatedBundles.map((b) => [b.trustDomain, b]));
      everyone = true;
      withdraws = true;
    }
    if (everyone) this.subscriptions.notifyAll();
    else this.subscriptions.notifyEntries(touched);
    if (touched.length > 0 || stored || everyone) this.changed([...removed.map((e) => e.id), ...(update.upserts ?? []).map((e) => e.id)]);
    return { needSvid, removed, withdraws, withdrawnEntryIds };
  }

  /**
   * Entries whose SVID the issuer could not get signed and retries because the server is unreachable (or refuses
   * this agent), or refused again on a retry: a first Workload API message stops waiting for them, and is sent with
   * the SVIDs there are. Cleared when the SVID arrives or the entry's certificate changes.
   */
  markUnsigned(entryIds: readonly string[]): void {
    const touched: AgentEntry[] = [];
    for (const id of entryIds) {
      const entry = this.index.get(id);
      if (entry === undefined || this.unsigned.has(id)) continue;
      this.unsigned.add(id);
      touched.push(entry);
    }
    this.subscriptions.notifyEntries(touched);
  }

  /**
   * The issuer stopped for good (the agent stops, is banned, or must re-attest): nothing more is signed, so no entry
   * is waited for. markUnsigned covers only the entries whose signing had failed: one whose SVID expires from now on
   * (a 1 h SVID while the agent waits for a new join token) would otherwise hold every new stream's first message for
   * the whole pending timeout, for as long as the agent runs.
   */
  signingEnded(): void {
    if (this.signingOver) return;
    this.signingOver = true;
    const now = this.clock.now();
    this.subscriptions.notifyEntries(this.entries().filter((e) => !this.unsigned.has(e.id) && !((this.svids.get(e.id)?.notAfter ?? 0) > now)));
  }

  /** Publishes newly issued SVIDs. An SVID whose entry is gone, or now has another SPIFFE ID, is dropped. */
  putSvids(svids: readonly WorkloadSvid[]): void {
    const touched: AgentEntry[] = [];
    for (const svid of svids) {
      const entry = this.index.get(svid.entryId);
      if (entry === undefined || entry.spiffeId !== svid.spiffeId) continue;
      this.unsigned.delete(svid.entryId);
      this.svids.set(svid.entryId, svid.hint === entry.hint ? svid : { ...svid, hint: entry.hint });
      touched.push(entry);
    }
    if (touched.length === 0) return;
    this.armExpiryTimer();
    this.subscriptions.notifyEntries(touched);
    this.changed(touched.map((e) => e.id));
  }

  /** Stops the expiry timer; the cache keeps answering from what it holds. */
  close(): void {
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    this.expiryAt = Infinity;
  }

  private requireBundle(): TrustBundle {
    if (this.own === undefined) throw unavailable('the agent has no trust bundle yet');
    return this.own;
  }

  /** Expired SVIDs leave the cache at their NotAfter, and the streams serving them send the reduced state. */
  private armExpiryTimer(): void {
    const next = this.oldestSvidExpiry();
    if (next === undefined || next >= this.expiryAt) return;
    this.expiryTimer?.cancel();
    this.expiryAt = next;
    this.expiryTimer = this.clock.setTimer(() => {
      this.expiryTimer = undefined;
      this.expiryAt = Infinity;
      this.dropExpired();
      this.armExpiryTimer();
    }, next - this.clock.now());
  }

  private dropExpired(): void {
    const now = this.clock.now();
    const touched: AgentEntry[] = [];
    const expired: string[] = [];
    const expiredIds: string[] = [];
    for (const [id, svid] of this.svids) {
      if (svid.notAfter > now) continue;
      this.svids.delete(id);
      expired.push(svid.spiffeId);
      expiredIds.push(id);
      this.log.debug({ entryId: id, spiffeId: svid.spiffeId }, 'X509-SVID expired before it could be renewed');
      const entry = this.index.get(id);
      if (entry !== undefined) touched.push(entry);
    }
    // One line per expiry batch: after a long outage every SVID of the cache expires within minutes, and a line per
    // entry would bury everything else in the log. The debug lines name each one.
    if (expired.length > 0) {
      this.log.warn(
        { count: expired.length, spiffeIds: expired.slice(0, EXPIRED_NAMED), more: Math.max(0, expired.length - EXPIRED_NAMED) },
        'X509-SVIDs expired before they could be renewed; no longer served',
      );
    }
    if (touched.length === 0) return;
    this.subscriptions.notifyEntries(touched);
    this.changed(expiredIds);
  }

  private changed(entryIds: readonly string[]): void {
    for (const l of this.changeListeners) callListener(this.log, () => l(entryIds));
  }
}
