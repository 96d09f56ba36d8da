import type { Clock, TimerHandle } from '../../common/clock.js';
import { failedPrecondition, unavailable } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { OutageLog } from '../../common/outage-log.js';
import type { FederatedBundleDocument } from '../../common/spiffe/bundle.js';
import type { Datastore } from '../datastore/datastore.js';
import { fetchFederatedBundle } from './bundle-fetch.js';
import { rootsOfAnotherTrustDomain, sameAuthorities, storedFederatedBundle } from './federated-bundle.js';
import { endpointTrustDomain, type FederationRelationship } from './relationship.js';

/** When the endpoint gives no spiffe_refresh_hint, or 0 (SPIRE's default too; Federation §4.1 recommends five minutes). */
export const DEFAULT_REFRESH_MS = 5 * 60_000;
/** A hint is obeyed within these bounds: a partner cannot make us poll it in a loop, nor stop us for days. */
export const MIN_REFRESH_MS = 30_000;
export const MAX_REFRESH_MS = 60 * 60_000;
/**
 * After a failure the next try comes this much later, doubling up to the polling interval (Federation §6.2: retry at
 * the next polling interval, not aggressively): a partner polled hourly is not asked every few minutes while it is
 * down, and one polled every minute is not left for longer after a passing failure.
 */
export const FIRST_RETRY_MS = 30_000;

/** `ownAnchors`: `anchors` are this server's own roots, not a stored bundle (fetchFederatedBundle). */
export type BundleFetcher = (rel: FederationRelationship, anchors: readonly Buffer[] | undefined, ownAnchors?: boolean) => Promise<FederatedBundleDocument>;

/** Where a relationship is defined: the config file's federates_with, or the admin API (stored in the datastore). */
export type RelationshipSource = 'config' | 'api';

/** This server's own trust domain and its current X.509 roots (the CA's bundle, which the datastore does not hold). */
export interface OwnRoots {
  readonly trustDomain: string;
  roots(): readonly Buffer[];
}

interface PollState {
  readonly rel: FederationRelationship;
  readonly source: RelationshipSource;
  timer: TimerHandle | undefined;
  /** Resolves to whether the poll was through (false: its relationship was removed or replaced first). */
  inFlight: Promise<boolean> | undefined;
  failures: number;
  /** The polling interval the last successful poll's refresh hint set (DEFAULT_REFRESH_MS before one). */
  intervalMs: number;
  lastAttemptAt: number | undefined;
  lastSuccessAt: number | undefined;
  /** Why the last poll failed; undefined after a success. */
  lastError: Error | undefined;
  /** The failing polls' log: a warning when failing begins or its reason changes, retries at debug, its end once. */
  readonly outage: OutageLog;
  nextPollAt: number | undefined;
  /** The anchors' bundle was set while the poll under way ran, which may have read the ones it replaced. */
  anchorsReplacedMeanwhile: boolean;
  /** The keys the last successful poll left out (leftOutKey); undefined before one. */
  leftOut: string | undefined;
}

/** A relationship and how its polls go, for operators (admin API Federation). */
export interface RelationshipStatus {
  readonly relationship: FederationRelationship;
  readonly source: RelationshipSource;
  readonly lastAttemptAt: number | undefined;
  readonly lastSuccessAt: number | undefined;
  readonly lastError: Error | undefined;
  readonly nextPollAt: number | undefined;
}

/**
 * Keeps every federated trust domain with a relationship (the config's `federates_with` and those made through the
 * admin API) up to date from its bundle endpoint: polls at the endpoint's refresh hint, stores a bundle whose
 * authorities changed (so agents hear of it through the change feed, like `bundle set`), and retries failures with
 * backoff. Keys the partner serves that meshid cannot use are left out and logged as a warning when they change (at the
 * first poll, or a different set), at debug otherwise; the rest applies,
 * and if none is left the poll fails (a publishing bug). A bundle with no keys is the partner revoking every key
 * (Bundle §4.1.3): it is stored, empty, and the trust domain is trusted for nothing. A failed poll (no answer, not a SPIFFE bundle) changes nothing: the stored
 * bundle stays, and with it what the workloads trust, until a fetch succeeds or an operator acts.
 */
export class FederatedBundlePoller {
  private readonly states = new Map<string, PollState>();
  private started = false;
  private stopped = false;

  constructor(
    relationships: readonly FederationRelationship[],
    private readonly ds: Datastore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly fetch: BundleFetcher = (rel, anchors, ownAnchors) => fetchFederatedBundle(rel, anchors, undefined, undefined, ownAnchors),
    private readonly own?: OwnRoots,
  ) {
    for (const rel of relationships) this.states.set(rel.trustDomain, newState(rel, 'config', this.log, this.clock));
  }

  /** Polls every relationship now, then on its own schedule. */
  start(): void {
    this.started = true;
    for (const state of this.states.values()) this.schedule(state, 0);
  }

  /**
   * Adds a relationship, or replaces the one of its trust domain (its poll history starts over); once started, it
   * is polled at once.
   */
  set(rel: FederationRelationship, source: RelationshipSource): void {
    this.remove(rel.trustDomain);
    const state = newState(rel, source, this.log, this.clock);
    this.states.set(rel.trustDomain, state);
    if (this.started && !this.stopped) this.schedule(state, 0);
  }

  /**
   * Replaces the relationship of `rel`'s trust domain as set does, if it still has one, and returns its status;
   * undefined, changing nothing, when it was removed meanwhile (a delete that overtook an update stays a delete).
   */
  replace(rel: FederationRelationship, source: RelationshipSource): RelationshipStatus | undefined {
    if (!this.states.has(rel.trustDomain)) return undefined;
    this.set(rel, source);
    return this.status(rel.trustDomain);
  }

  /** Stops polling `trustDomain`; a poll under way finishes but schedules nothing. */
  remove(trustDomain: string): void {
    this.states.get(trustDomain)?.timer?.cancel();
    this.states.delete(trustDomain);
  }

  /**
   * Polls `trustDomain` now (or waits for the poll under way) and returns the relationship's status after it, whatever
   * its outcome. A relationship replaced meanwhile is polled again under its new settings, so the outcome is the
   * current one's; one removed before the poll was through stored nothing of it, and undefined is returned, while one
   * removed after is reported as that poll left it.
   */
  async refresh(trustDomain: string): Promise<RelationshipStatus | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const state = this.states.get(trustDomain);
      if (state === undefined) return undefined;
      const through = await (state.inFlight ?? this.poll(state));
      const current = this.states.get(trustDomain);
      if (current === state || (current === undefined && through)) return this.statusOf(state);
    }
    return this.status(trustDomain);
  }

  /**
   * An operator set the stored bundle of `trustDomain` (`bundle set`): every https_spiffe relationship that
   * authenticates its endpoint with that bundle and whose last poll failed is polled now, so a re-seed is answered at
   * once, not at the next retry (up to the refresh interval). One not failing keeps its schedule; one polling is polled
   * again right after, if that poll fails: it may have read the roots the re-seed replaced.
   */
  anchorsReplaced(trustDomain: string): void {
    this.anchorsChanged(trustDomain, undefined);
  }

  /** anchorsReplaced, for every relationship but `storedBy`, whose own poll just stored the bundle. */
  private anchorsChanged(trustDomain: string, storedBy: PollState | undefined): void {
    if (this.stopped || !this.started) return;
    for (const state of this.states.values()) {
      if (state === storedBy) continue;
      const { rel } = state;
      if (rel.profile !== 'https_spiffe' || endpointTrustDomain(rel) !== trustDomain) continue;
      if (state.inFlight !== undefined) state.anchorsReplacedMeanwhile = true;
      else if (state.lastError !== undefined) this.schedule(state, 0);
    }
  }

  /** Every relationship and its polls: the config's in its order, then the API's in the order they were added. */
  statuses(): RelationshipStatus[] {
    return [...this.states.values()].map((s) => this.statusOf(s));
  }

  /** One relationship's status; undefined when `trustDomain` has none. */
  status(trustDomain: string): RelationshipStatus | undefined {
    const state = this.states.get(trustDomain);
    return state === undefined ? undefined : this.statusOf(state);
  }

  private statusOf(s: PollState): RelationshipStatus {
    return { relationship: s.rel, source: s.source, lastAttemptAt: s.lastAttemptAt, lastSuccessAt: s.lastSuccessAt, lastError: s.lastError, nextPollAt: s.nextPollAt };
  }

  /** The poll of `trustDomain` under way, if any. */
  pending(trustDomain: string): Promise<unknown> | undefined {
    return this.states.get(trustDomain)?.inFlight;
  }

  stop(): void {
    this.stopped = true;
    for (const state of this.states.values()) state.timer?.cancel();
  }

  private schedule(state: PollState, ms: number): void {
    state.timer?.cancel();
    state.nextPollAt = this.clock.now() + ms;
    state.timer = this.clock.setTimer(() => void this.poll(state), ms);
  }

  private poll(state: PollState): Promise<boolean> {
    state.timer?.cancel();
    state.timer = undefined;
    state.nextPollAt = undefined;
    state.anchorsReplacedMeanwhile = false;
    const run = this.pollOnce(state).finally(() => {
      state.inFlight = undefined;
    });
    state.inFlight = run;
    return run;
  }

  /**
   * A relationship removed or replaced while its poll ran neither stores what that poll fetched nor polls again, and
   * its poll is not through (false). One made over the admin API is checked in the store's own transaction too: a
   * delete that commits between the check here and the store, which a datastore slower than SQLite's would let
   * happen, must not leave a bundle fetched for the relationship it deleted.
   */
  private async pollOnce(state: PollState): Promise<boolean> {
    const { rel } = state;
    let next: number;
    state.lastAttemptAt = this.clock.now();
    try {
      const previous = await this.ds.getBundle(rel.trustDomain);
      const anchorDomain = endpointTrustDomain(rel);
      // An endpoint with an SVID of this server's own trust domain (a mirror it runs) is authenticated with the CA's
      // bundle: the datastore holds federated bundles only, and "bundle set" refuses the own trust domain, so the
      // stored one would be missing for ever and the poll's advice to seed it impossible to follow.
      const ownAnchors = anchorDomain !== rel.trustDomain && anchorDomain === this.own?.trustDomain;
      const anchors = anchorDomain === rel.trustDomain
        ? previous?.x509Authorities
        : ownAnchors ? this.own!.roots() : (await this.ds.getBundle(anchorDomain))?.x509Authorities;
      const { bundle: fetched, ignored, unreadableTypes } = await this.fetch(rel, anchors, ownAnchors);
      if (this.stopped || this.states.get(rel.trustDomain) !== state) return false;
      const where = { trustDomain: rel.trustDomain, url: rel.bundleEndpointUrl };
      if (fetched.x509Authorities.length === 0 && fetched.jwtAuthorities.length === 0 && ignored.length > unreadableTypes) {
        // Keys were served, and flaws left none usable: a publishing bug (base64url in x5c, say), not the revocation an
        // empty bundle is (Bundle §4.1.3). Storing nothing would drop all trust in the domain and, for https_spiffe,
        // lock the relationship out until the operator re-seeds it. Keys of types meshid does not read (an EdDSA
        // jwt-svid key) are no such bug: they are there for other consumers, and the partner dropping every key
        // meshid can use beside them is a revocation like any other.
        throw unavailable(
          `${rel.bundleEndpointUrl} served ${ignored.length === 1 ? 'a key' : `${ignored.length} keys`} of ${rel.trustDomain} and none meshid can use, ` +
            `so the stored bundle is kept: ${ignored.join('; ')}`,
        );
      }
      // A partner may publish keys for other consumers (an EdDSA JWT key) for good: warned of every poll, that is a
      // warning every few minutes for ever, which teaches operators to ignore the log. A different set is news.
      const leftOut = leftOutKey(ignored);
      if (ignored.length > 0) {
        const level = leftOut === state.leftOut ? 'debug' : 'warn';
        this.log[level]({ ...where, ignored }, "the partner's bundle holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is applied");
      }
      const stored = storedFederatedBundle(rel.trustDomain, fetched, previous, this.clock.now());
      const empty = stored.x509Authorities.length === 0 && stored.jwtAuthorities.length === 0;
      if (previous === undefined || !sameAuthorities(previous, stored)) {
        // Only over what was read before the fetch: a bundle set or deleted meanwhile is the operator's last word.
        await this.ds.setBundle(stored, { replaces: previous?.sequence ?? null, relationship: state.source === 'api' });
        // A relationship whose endpoint another trust domain hosts is authenticated with this bundle (Federation
        // §5.2.2.4 allows it to come "through another federation relationship"): if it is failing, it tries the new roots now.
        this.anchorsChanged(rel.trustDomain, state);
        const fields = { ...where, sequence: stored.sequence, endpointSequence: fetched.sequence };
        if (empty && ignored.length > 0) {
          this.log.warn(
            { ...fields, ignored },
            'the endpoint serves no key of its trust domain that meshid can use, only keys of types it does not read: ' +
              'every key meshid trusted of it is revoked, nothing of it is trusted any more',
          );
        } else if (empty) this.log.warn(fields, 'the endpoint revoked every key of its trust domain (an empty bundle): nothing of it is trusted any more');
        else this.log.info(fields, 'federated bundle updated from its endpoint');
        const otherDomains = rootsOfAnotherTrustDomain(rel.trustDomain, stored.x509Authorities);
        if (otherDomains !== undefined) {
          this.log.warn(
            { ...where, reason: otherDomains.message },
            `the bundle endpoint serves a CA of another trust domain: if its URL is ${otherDomains.trustDomains.join(' or ')}'s endpoint, correct the relationship`,
          );
        }
      }
      state.lastSuccessAt = this.clock.now();
      state.leftOut = leftOut;
      if (rel.profile === 'https_spiffe' && anchorDomain === rel.trustDomain && stored.x509Authorities.length === 0) {
        // Stored all the same: keeping roots the partner revoked would trust what it no longer vouches for. But the
        // next fetch has nothing left to authenticate the endpoint with, which the operator must hear of.
        state.failures = 1;
        state.lastError = failedPrecondition(
          `${rel.bundleEndpointUrl} served a bundle of ${rel.trustDomain} with ${empty ? (ignored.length > 0 ? 'no keys meshid can use' : 'no keys') : 'JWT keys but no X.509 roots'}, now stored: ` +
            `${rel.trustDomain} is trusted for ${empty ? 'nothing' : 'JWT-SVIDs only'}, and nothing is left to authenticate its https_spiffe ` +
            `endpoint with, so polls fail until the partner's new roots are seeded with "meshid-server bundle set --trust-domain ${rel.trustDomain}"`,
        );
        next = FIRST_RETRY_MS;
        this.log.error({ ...where, reason: state.lastError.message }, 'a federation relationship can no longer authenticate its bundle endpoint');
      } else {
        const recovered = state.outage.recovered();
        if (recovered !== undefined) this.log.info({ ...where, ...recovered }, 'the federated bundle is refreshed from its endpoint again');
        state.failures = 0;
        state.lastError = undefined;
        // A hint of 0 asks for nothing meaningful: taken as none, as SPIRE does, not as "as often as allowed".
        const hint = fetched.refreshHintSeconds ? fetched.refreshHintSeconds * 1000 : DEFAULT_REFRESH_MS;
        state.intervalMs = Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, hint));
        next = state.intervalMs;
      }
    } catch (err) {
      if (this.stopped || this.states.get(rel.trustDomain) !== state) return false;
      const error = err instanceof Error ? err : new Error(String(err));
      state.failures++;
      state.lastError = error;
      next = Math.min(state.intervalMs, FIRST_RETRY_MS * 2 ** Math.min(state.failures - 1, 10));
      // As every retried failure is logged (README, "Logs and stopping"): a partner down for a day is not a warning
      // every five minutes. A new reason is news (its kind is its message).
      state.outage.failed(
        error.message,
        'warn',
        { trustDomain: rel.trustDomain, url: rel.bundleEndpointUrl, failures: state.failures, retryInMs: next, reason: error.message },
        'cannot refresh a federated bundle from its endpoint; the stored one stays as it is',
      );
    }
    // A poll that failed with the anchors a re-seed replaced meanwhile is no answer to it: the seed is tried at once.
    if (state.anchorsReplacedMeanwhile && state.lastError !== undefined) next = 0;
    // Removed or replaced while its bundle was being stored: the current state has its own schedule.
    if (!this.stopped && this.states.get(rel.trustDomain) === state) this.schedule(state, next);
    return true;
  }
}

function newState(rel: FederationRelationship, source: RelationshipSource, log: Logger, clock: Clock): PollState {
  return {
    rel, source, timer: undefined, inFlight: undefined, failures: 0, intervalMs: DEFAULT_REFRESH_MS,
    lastAttemptAt: undefined, lastSuccessAt: undefined, lastError: undefined, outage: new OutageLog(log, clock), nextPollAt: undefined, anchorsReplacedMeanwhile: false,
    leftOut: undefined,
  };
}

/** The set of left-out keys as one comparable value: the same keys in another order are the same set. */
function leftOutKey(ignored: readonly string[]): string {
  return JSON.stringify([...ignored].sort());
}
