import { systemClock, type Clock, type TimerHandle } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { Change, Datastore, RegistrationEntry, StoredBundle } from '../datastore/datastore.js';
import { EntryIndex } from '../entries/entry-index.js';
import { sameAuthorities } from '../federation/federated-bundle.js';
import { storedBundleToTrustBundle } from './convert.js';

/**
 * After a refresh that could not read the datastore, how long until it is tried again, doubling up to the maximum.
 * Without a retry the view would stay behind until the next change of the same kind, which may never come: an entry
 * deleted to cut a workload off would stay signable.
 */
export const REFRESH_RETRY_FIRST_MS = 1_000;
export const REFRESH_RETRY_MAX_MS = 30_000;
/**
 * While refreshes keep failing, at most one line per this interval after the first (with how many failed since the
 * last line): the retries alone would log about two lines a minute through a long datastore outage.
 */
export const REFRESH_FAILURE_LOG_EVERY_MS = 10 * 60_000;

export type HubEvent = { kind: 'entries' } | { kind: 'bundle' } | { kind: 'federated' } | { kind: 'agent'; spiffeIds?: ReadonlySet<string> } | { kind: 'stopping' };

/**
 * The server's live view for pushing to agents: the entry index and the federated bundles, refreshed from the
 * datastore's change feed as changes commit, and a fan-out to every open Sync stream. Changes are applied in order
 * (one refresh at a time), so a stream never sees revision N+1 before N.
 */
export class SyncHub {
  readonly index = new EntryIndex();
  /**
   * Each federated bundle with the generation it got here: a number this process never hands out twice. The stored
   * sequence alone cannot tell changes apart: a bundle deleted and set again starts over at 1, and when both land
   * before one refresh, agents would keep the deleted authorities.
   */
  private federated = new Map<string, { stored: StoredBundle; bundle: TrustBundle; generation: number }>();
  private generations = 0;
  private listeners = new Set<(event: HubEvent) => void>();
  private chain: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  /** The changes whose refresh failed, by kind (a later refresh of a kind reads everything since, so one each). */
  private readonly failed = new Map<Change['kind'], Change>();
  private retryTimer: TimerHandle | undefined;
  private retryDelayMs = REFRESH_RETRY_FIRST_MS;
  /** When the last failed-refresh line was logged (undefined while refreshes succeed), and failures since. */
  private failureLoggedAt: number | undefined;
  private failuresSinceLogged = 0;

  constructor(
    private readonly ds: Datastore,
    private readonly ownTrustDomain: string,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {}

  async start(): Promise<void> {
    const revision = await this.ds.currentRevision();
    const entries: RegistrationEntry[] = await this.ds.listAllEntries();
    this.index.load(entries, revision);
    await this.reloadFederated();
    this.unsubscribe = this.ds.onChange((change) => this.enqueue(change));
    // The entries were read in pages over several turns (listAllEntries), and a change committed meanwhile was heard by
    // nobody: the index catches up from `revision` now rather than at the next change, which may never come.
    if ((await this.ds.currentRevision()) !== revision) this.enqueue({ kind: 'entry', revision });
  }

  private enqueue(change: Change): void {
    this.chain = this.chain.then(() => this.refresh(change)).then(
      () => this.refreshed(change),
      (err: unknown) => this.refreshFailed(change, err),
    );
  }

  private refreshed(change: Change): void {
    if (!this.failed.delete(change.kind) || this.failed.size > 0) return;
    this.retryDelayMs = REFRESH_RETRY_FIRST_MS;
    this.log.info({ kind: change.kind, failuresSinceLastLine: this.failuresSinceLogged }, 'the server view caught up with the datastore after a failed refresh');
    this.failureLoggedAt = undefined;
    this.failuresSinceLogged = 0;
  }

  /** The view stays as it was; the refresh is tried again later (and by any change of its kind meanwhile). */
  private refreshFailed(change: Change, err: unknown): void {
    const retrying = !this.stopped && this.retryTimer === undefined;
    const now = this.clock.now();
    if (this.failureLoggedAt === undefined) {
      this.log.error(
        { err, kind: change.kind, ...(retrying && { retryInMs: this.retryDelayMs }) },
        'failed to refresh the server view after a datastore change: it stays as it was until a refresh succeeds',
      );
      this.failureLoggedAt = now;
    } else {
      this.failuresSinceLogged++;
      // A line "logged" after now was logged before the wall clock was stepped back (NTP): waiting for the clock to
      // pass it again would keep a datastore outage quiet for as long as the step.
      if (now - this.failureLoggedAt >= REFRESH_FAILURE_LOG_EVERY_MS || now < this.failureLoggedAt) {
        this.log.error(
          { err, kind: change.kind, failuresSinceLastLine: this.failuresSinceLogged },
          'the server view still cannot refresh from the datastore: it stays as it was until a refresh succeeds',
        );
        this.failureLoggedAt = now;
        this.failuresSinceLogged = 0;
      }
    }
    this.failed.set(change.kind, change);
    if (!retrying) return;
    this.retryTimer = this.clock.setTimer(() => {
      this.retryTimer = undefined;
      if (this.stopped || this.failed.size === 0) return;
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, REFRESH_RETRY_MAX_MS);
      for (const retry of this.failed.values()) this.enqueue(retry);
    }, this.retryDelayMs);
  }

  /**
   * Stops following the datastore and tells every stream the server is going: each Sync stream ends UNAVAILABLE at
   * once, so its agent reconnects (to this server restarted, or another) instead of waiting on a half-closed
   * connection, and the agent API's graceful shutdown has no open stream to wait for.
   */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    this.emit({ kind: 'stopping' });
  }

  /** Resolves once every change committed so far has been applied and fanned out. */
  settled(): Promise<void> {
    return this.chain;
  }

  private async refresh({ kind, agentIds }: Change): Promise<void> {
    if (kind === 'entry') {
      const changes = await this.ds.listEntryChangesSince(this.index.revision);
      if (changes.reset) {
        // The tombstones since the index's revision were pruned: only a full reload drops the entries deleted then.
        this.log.warn(
          { from: this.index.revision, to: changes.revision },
          'entry change feed no longer reaches back to the index: reloading every entry',
        );
        this.index.load(changes.entries, changes.revision);
      } else {
        if (changes.upserts.length === 0 && changes.deletedIds.length === 0) return;
        this.index.apply(changes.upserts, changes.deletedIds, changes.revision);
      }
      this.emit({ kind: 'entries' });
    } else if (kind === 'bundle') {
      if (await this.reloadFederated()) this.emit({ kind: 'federated' });
    } else {
      this.emit(agentIds === undefined ? { kind: 'agent' } : { kind: 'agent', spiffeIds: new Set(agentIds) });
    }
  }

  /** The own bundle changes through the CA manager, which calls this directly. */
  ownBundleChanged(): void {
    this.emit({ kind: 'bundle' });
  }

  private async reloadFederated(): Promise<boolean> {
    const next: typeof this.federated = new Map();
    let changed = false;
    for (const stored of await this.ds.listBundles()) {
      if (stored.trustDomain === this.ownTrustDomain) continue;
      const held = this.federated.get(stored.trustDomain);
      if (held !== undefined && held.stored.sequence === stored.sequence && sameAuthorities(held.stored, stored)) {
        next.set(stored.trustDomain, held);
        continue;
      }
      next.set(stored.trustDomain, { stored, bundle: storedBundleToTrustBundle(stored), generation: ++this.generations });
      changed = true;
    }
    changed ||= [...this.federated.keys()].some((td) => !next.has(td));
    this.federated = next;
    return changed;
  }

  federatedBundle(trustDomain: string): TrustBundle | undefined {
    return this.federated.get(trustDomain)?.bundle;
  }

  /** Differs from an earlier stamp of the same trust domains whenever one of their bundles changed, came or went. */
  federatedStamp(trustDomains: readonly string[]): string {
    return trustDomains.map((td) => `${td}#${this.federated.get(td)?.generation ?? 0}`).join(',');
  }

  subscribe(listener: (event: HubEvent) => void): () => void {
    // A stream that got here after stop() (its authentication was in flight) hears at once that the server is going.
    if (this.stopped) {
      queueMicrotask(() => listener({ kind: 'stopping' }));
      return () => undefined;
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: HubEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (err) {
        this.log.error({ err }, 'sync listener failed');
      }
    }
  }
}
