import type { Logger } from '../../common/log.js';
import type { Selector } from '../../common/spiffe/selector.js';
import type { AgentEntry } from './agent-entry.js';
import { entryMatches, selectorSet, workloadKey } from './entry-index.js';

interface Subscription {
  readonly workload: ReadonlySet<string>;
  /** The workload's selectors as one string: subscriptions with equal keys match the same entries. */
  readonly key: string;
  readonly listener: () => void;
}

/** Runs a listener of the cache; a throw is logged, so one failing listener cannot keep the others from being told. */
export function callListener(log: Logger, listener: () => void): void {
  try {
    listener();
  } catch (err) {
    log.error({ err }, 'a cache listener failed');
  }
}

/**
 * The identity cache's open streams, by workload (identity-cache.ts): who is told of a change to which entries, and the
 * generation that tells the cache's memoized snapshots from stale ones. Matching is decided once per distinct
 * workload (selector set), not per stream: a mass rotation touches thousands of entries while a thousand streams of
 * one workload are subscribed.
 */
export class WorkloadSubscriptions {
  private readonly subscriptions = new Set<Subscription>();
  private changes = 0;

  constructor(private readonly log: Logger) {}

  /** Bumped on every change that notifies subscribers; memoized snapshots are valid for one generation. */
  get generation(): number {
    return this.changes;
  }

  subscribe(selectors: readonly Selector[], listener: () => void): () => void {
    const sub: Subscription = { workload: selectorSet(selectors), key: workloadKey(selectors), listener };
    this.subscriptions.add(sub);
    return () => void this.subscriptions.delete(sub);
  }

  /** The selector set of each workload some open stream serves, once per distinct set. */
  *workloads(): Iterable<ReadonlySet<string>> {
    const seen = new Set<string>();
    for (const sub of this.subscriptions) {
      if (seen.has(sub.key)) continue;
      seen.add(sub.key);
      yield sub.workload;
    }
  }

  /** Tells the streams whose workload matches one of `entries`. */
  notifyEntries(entries: readonly AgentEntry[]): void {
    if (entries.length === 0) return;
    // Before any listener runs: one may ask for a snapshot synchronously.
    this.changes++;
    const concerned = new Map<string, boolean>();
    for (const sub of this.subscriptions) {
      let yes = concerned.get(sub.key);
      if (yes === undefined) concerned.set(sub.key, (yes = entries.some((e) => entryMatches(e, sub.workload))));
      if (yes) callListener(this.log, sub.listener);
    }
  }

  notifyAll(): void {
    this.changes++;
    for (const sub of this.subscriptions) callListener(this.log, sub.listener);
  }
}
