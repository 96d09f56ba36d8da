/**
 * What the in-memory WorkloadCaches of the SDS and Workload API tests (fake-sds-cache.ts, fake-workload-cache.ts)
 * share: entries matched by one selector each, in creation order (so svids[0] is the oldest matching entry's SVID);
 * federated bundles by trust domain; and listeners, EVERY one of which each change notifies, as the interface allows
 * ("may call more often than strictly needed"), so the handlers must compare for themselves.
 */
import type { TrustBundle } from '../../src/common/spiffe/bundle.js';
import { formatSelector, type Selector } from '../../src/common/spiffe/selector.js';
import type { WorkloadSvid } from '../../src/agent/cache/workload-cache.js';

export interface FakeEntryFields {
  readonly selector: string;
  readonly spiffeId: string;
  svid: WorkloadSvid | undefined;
  federatesWith: string[];
}

export abstract class FakeEntryCache<E extends FakeEntryFields> {
  isReady = true;
  /** False: the entries are only state restored from disk (WorkloadCache.synced). */
  isSynced = true;
  protected readonly entries: E[] = [];
  protected readonly federated = new Map<string, TrustBundle>();
  protected readonly listeners = new Set<() => void>();

  /** After every change: notifies every listener (a fake that keeps snapshots forgets them first). */
  protected changed(): void {
    this.notify();
  }

  removeEntry(spiffeId: string): void {
    const at = this.entries.findIndex((e) => e.spiffeId === spiffeId);
    if (at === -1) throw new Error(`no entry ${spiffeId}`);
    this.entries.splice(at, 1);
    this.changed();
  }

  setFederatesWith(spiffeId: string, trustDomains: string[]): void {
    for (const e of this.entries) if (e.spiffeId === spiffeId) e.federatesWith = trustDomains;
    this.changed();
  }

  setFederatedBundle(bundle: TrustBundle): void {
    this.federated.set(bundle.trustDomain, bundle);
    this.changed();
  }

  /** Calls every listener now, without changing anything: a spurious notification. */
  notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  svidOf(spiffeId: string): WorkloadSvid {
    const svid = this.entries.find((e) => e.spiffeId === spiffeId)?.svid;
    if (svid === undefined) throw new Error(`no issued SVID for ${spiffeId}`);
    return svid;
  }

  ready(): boolean {
    return this.isReady;
  }

  synced(): boolean {
    return this.isSynced;
  }

  subscribe(_selectors: readonly Selector[], listener: () => void): () => void {
    // A wrapper per subscription, so the same function subscribed twice counts twice.
    const entry = (): void => listener();
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /** The entries a caller with these selectors gets, in creation order. */
  protected matching(selectors: readonly Selector[]): E[] {
    const wanted = new Set(selectors.map(formatSelector));
    return this.entries.filter((e) => wanted.has(e.selector));
  }

  /** The federated bundles these entries federate with, by trust domain name; those not (yet) held left out. */
  protected federatedBundlesOf(matching: readonly E[]): TrustBundle[] {
    const federatedDomains = [...new Set(matching.flatMap((e) => e.federatesWith))].sort();
    return federatedDomains.flatMap((td) => {
      const b = this.federated.get(td);
      return b === undefined ? [] : [b];
    });
  }
}
