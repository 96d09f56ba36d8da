import type { Logger } from '../../common/log.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { entryFromMessage, type AgentEntry } from '../cache/agent-entry.js';
import type { IdentityCache } from '../cache/identity-cache.js';
import type { SvidIssuer } from '../cache/svid-issuer.js';
import { bundleFromMessage, type BundleMessage, type SyncUpdateMessage } from './messages.js';

export interface SyncApplyDeps {
  cache: IdentityCache;
  issuer: SvidIssuer;
  log: Logger;
  /** The own trust domain: a bundle for any other is not the own bundle. */
  trustDomain: string;
}

export interface SyncApplied {
  readonly upserts: number;
  readonly removed: number;
  /** The own bundle, when this update carried one. */
  readonly bundle: TrustBundle | undefined;
  readonly taintedKeyIds: ReadonlySet<string>;
  /** The update may have taken away something workloads were served (AppliedUpdate.withdraws). */
  readonly withdraws: boolean;
  /** The entries it took away or changed (AppliedUpdate.withdrawnEntryIds). */
  readonly withdrawnEntryIds: readonly string[];
}

/**
 * Applies one SyncUpdate (agent.proto) to the cache and hands the consequences to the issuer: new and changed
 * entries get SVIDs, removed ones are forgotten, tainted authorities trigger re-signing. A malformed entry or bundle
 * is logged and skipped — one bad record must not stop every other identity from being served — and a malformed new
 * version of an entry the agent holds withdraws that entry (fail closed).
 */
export function applySyncUpdate(u: SyncUpdateMessage, deps: SyncApplyDeps): SyncApplied {
  const { cache, issuer, log } = deps;
  const upserts: AgentEntry[] = [];
  const unusable: string[] = [];
  for (const m of u.entries ?? []) {
    try {
      upserts.push(entryFromMessage(m));
    } catch (err) {
      // The server now counts this version as held: keeping the previous one would serve, with nothing to end it,
      // whatever the new version took away (selectors, the SPIFFE ID). The entry is withdrawn instead.
      const held = m.id !== undefined && cache.entry(m.id) !== undefined;
      if (held) unusable.push(m.id!);
      log.error({ err, entryId: m.id }, held ? 'the server sent a version of an entry the agent cannot use; the entry is no longer served' : 'the server sent an entry the agent cannot use; skipped');
    }
  }
  const bundle = u.bundle === undefined ? undefined : readBundle(u.bundle, deps, 'own');
  if (bundle !== undefined && bundle.trustDomain !== deps.trustDomain) {
    log.error({ trustDomain: bundle.trustDomain }, `the server sent another trust domain's bundle as the own one; ignored`);
  }
  const own = bundle?.trustDomain === deps.trustDomain ? bundle : undefined;
  let federated: TrustBundle[] | undefined;
  if (u.federated_bundles_changed) {
    federated = [];
    for (const b of u.federated_bundles ?? []) {
      const parsed = readBundle(b, deps, 'federated');
      if (parsed !== undefined && parsed.trustDomain !== deps.trustDomain) federated.push(parsed);
    }
  }
  const removedIds = [...(u.removed_entry_ids ?? []), ...unusable];
  const applied = cache.apply({
    upserts,
    removed: removedIds,
    ...(own !== undefined ? { bundle: own } : {}),
    ...(federated !== undefined ? { federatedBundles: federated } : {}),
  });
  issuer.forget(applied.removed.map((e) => e.id));
  issuer.request(applied.needSvid);
  const tainted = new Set((u.tainted_authority_ids ?? []).map((k) => k.toLowerCase()));
  issuer.setTainted([...tainted]);
  if (own !== undefined) issuer.resignUnanchored(own.x509Authorities);
  return { upserts: upserts.length, removed: applied.removed.length, bundle: own, taintedKeyIds: tainted, withdraws: applied.withdraws, withdrawnEntryIds: applied.withdrawnEntryIds };
}

function readBundle(m: BundleMessage, deps: SyncApplyDeps, what: string): TrustBundle | undefined {
  try {
    return bundleFromMessage(m);
  } catch (err) {
    deps.log.error({ err, trustDomain: m.trust_domain }, `the server sent a ${what} bundle the agent cannot use; ignored`);
    return undefined;
  }
}
