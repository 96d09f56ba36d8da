import type { Selector } from '../../common/spiffe/selector.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';

/**
 * The seam between the agent's core (sync with the server, SVID issuance and rotation, persistence) and the APIs it
 * serves to workloads (Workload API, SDS). The handlers own this interface; the cache implements it.
 */

/** One X.509-SVID the agent holds for a registration entry. */
export interface WorkloadSvid {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  /** DER certificates, leaf first, then the datacenter intermediate (never the root). */
  readonly chain: readonly Buffer[];
  /** PKCS#8 DER, unencrypted. */
  readonly privateKey: Buffer;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Changes exactly when the SVID is re-issued (the leaf serial): what streams compare to avoid duplicates. */
  readonly version: string;
  /**
   * The entry's certificate inputs it was signed for (certificateInputs): an SVID whose entry has other inputs now
   * is re-signed, after a restart too. Undefined for SVIDs an earlier agent stored.
   */
  readonly inputs?: string | undefined;
}

/** What a caller with given selectors is entitled to right now. */
export interface IdentitySnapshot {
  /** True when at least one entry matches the selectors (even if its SVID is not issued yet). */
  readonly entitled: boolean;
  /**
   * Issued SVIDs of the matching entries in a stable order: svids[0] is the default identity (the oldest matching
   * entry: adding entries never changes a workload's default). Entries whose SVID is not issued yet are absent.
   */
  readonly svids: readonly WorkloadSvid[];
  /**
   * The default identity's SVID: the oldest matching entry's, once issued and while unexpired. Undefined while that
   * entry waits for it, whatever its siblings hold: then svids[0] is some other identity, which must not be served as
   * the default. A sibling that is still waiting does not hold it back.
   */
  readonly defaultSvid: WorkloadSvid | undefined;
  /**
   * Whether nothing more is coming soon: every matching entry has its SVID, or its signing failed and is being
   * retried (the server unreachable, say). The Workload API's first X.509 message waits for this, so a one-shot fetch
   * sees every identity, but not for an SVID that may be hours away while the others are cached.
   */
  readonly complete: boolean;
  /**
   * The SPIFFE IDs of the matching entries whose SVID is being signed right now: none held (or it expired) and no
   * failed signing being retried. Empty exactly when `complete`. What an SDS first response waits for: a name among
   * these is missing for a moment, where any other name that does not resolve may never come.
   */
  readonly signing: ReadonlySet<string>;
  /**
   * The SPIFFE IDs of the matching entries with no valid SVID held, for whatever reason: those in `signing`, those
   * whose signing failed and is retried, those nothing signs any more (the agent banned or awaiting a new join token).
   * A name among these is the caller's own and missing for now, not unknown: a unary answer says "retry"
   * (UNAVAILABLE), as the Workload API does for a caller with no SVID yet, never "no such name" (NOT_FOUND).
   */
  readonly withoutSvid: ReadonlySet<string>;
  /** Whether the default identity's entry is among those being signed: `defaultSvid` is then undefined, shortly. */
  readonly defaultSigning: boolean;
  /** The own trust domain's bundle. */
  readonly bundle: TrustBundle;
  /** Bundles of the foreign trust domains the matching entries federate with, sorted by trust domain. */
  readonly federatedBundles: readonly TrustBundle[];
}

export interface JwtSvidResult {
  readonly spiffeId: string;
  readonly hint: string;
  readonly token: string;
  readonly expiresAt: number;
}

export interface WorkloadCache {
  /** False until the agent has state to serve (first sync, or state restored from disk). */
  ready(): boolean;
  /**
   * Whether the entries are meshid-server's word since the agent started (a sync applied, or a ban that withdrew
   * them all), not only state restored from disk, and for the agent ID it holds now (false again from a re-attestation
   * under a new one to its first sync): until then a caller no entry matches may hold one created while
   * the agent was down, which only the server can say.
   */
  synced(): boolean;
  snapshot(selectors: readonly Selector[]): IdentitySnapshot;
  /**
   * Calls `listener` after any change that may alter the snapshot for these selectors (SVID issued or rotated,
   * entries added/removed/changed, bundle or federated bundle change). Listeners recompute and compare; the cache
   * may call more often than strictly needed, never less. Returns the unsubscribe function.
   */
  subscribe(selectors: readonly Selector[], listener: () => void): () => void;
  /**
   * JWT-SVIDs for the matching entries (or only `spiffeId` if given) whose `aud` is `audience` as given (order and
   * duplicates kept), all or none; cached per (entry, audience list) and refreshed once half their lifetime has
   * passed. Throws MeshidError permission_denied when not entitled, unavailable when one cannot be signed (server
   * unreachable, nothing valid cached, or the server's signing budget spent: then with retryAfterMs). A refusal of
   * the server's signing budget is waited out for a while, but not past `deadline` (on the agent's clock; default
   * none), nor once `signal` aborts (the caller cancelled the call).
   */
  fetchJwtSvids(
    selectors: readonly Selector[],
    audience: readonly string[],
    spiffeId?: string,
    deadline?: number,
    signal?: AbortSignal,
  ): Promise<JwtSvidResult[]>;
}
