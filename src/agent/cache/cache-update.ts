import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { AgentEntry } from './agent-entry.js';
import { workloadKey } from './entry-index.js';

/** A change the server (or the store, at start-up) hands to the cache. Absent fields are unchanged. */
export interface CacheUpdate {
  readonly upserts?: readonly AgentEntry[];
  readonly removed?: readonly string[];
  readonly bundle?: TrustBundle;
  /** The complete set of federated bundles, when it changed. */
  readonly federatedBundles?: readonly TrustBundle[];
}

/** What an update did to the entries: what needs (re)signing and what is gone. */
export interface AppliedUpdate {
  /** New entries, and entries whose certificate inputs changed (SPIFFE ID, DNS names, TTL): they need an SVID. */
  readonly needSvid: readonly AgentEntry[];
  readonly removed: readonly AgentEntry[];
  /**
   * Whether the update may take away something workloads were served: an entry removed, an entry changed in what
   * workloads see of it (selectors, SPIFFE ID, federation), or bundles replaced. Such a change must reach the data
   * dir before it reaches a workload: a restart from a state saved before it would serve the old grant again.
   */
  readonly withdraws: boolean;
  /** The entries such a change concerns (removed, or changed in what workloads see): what that save must write. */
  readonly withdrawnEntryIds: readonly string[];
}

/**
 * Whether two versions of an entry look the same to workloads: who matches it (selectors), the identity and hint it
 * is served under, the bundles it brings, its place in the default order. Everything else (DNS names, TTLs, parent,
 * flags) reaches workloads only through the next SVID, or not at all.
 */
export function sameWorkloadView(a: AgentEntry, b: AgentEntry): boolean {
  return (
    a.spiffeId === b.spiffeId &&
    a.hint === b.hint &&
    a.createdAt === b.createdAt &&
    workloadKey(a.selectors) === workloadKey(b.selectors) &&
    a.federatesWith.join('\n') === b.federatesWith.join('\n')
  );
}
