import { invalidArgument } from '../../common/errors.js';
import { MAX_SDS_RESOURCE_NAMES } from '../../common/grpc/repeated-limits.js';
import { parseSpiffeId, trustDomainId } from '../../common/spiffe/spiffe-id.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { IdentitySnapshot, WorkloadSvid } from '../cache/workload-cache.js';
import type { ValidationMode } from './node-validation-mode.js';
import { MAX_RESOURCE_NAME_BYTES, WILDCARD_NAME, type ResolvedSdsOptions } from './sds-options.js';

/**
 * SDS resource names → what they stand for, for one caller's snapshot (SPEC-NOTES §9 name table). Resolution is a
 * pure function of the snapshot: a name the caller is not entitled to resolves exactly like a name that does not
 * exist (undefined), so no answer tells a caller whether someone else's identity exists.
 */

/** What one resource name stands for: an SVID to serve as tls_certificate, or trust domains as validation_context. */
export type SdsResource =
  | { readonly kind: 'tls_certificate'; readonly svid: WorkloadSvid }
  | { readonly kind: 'validation_context'; readonly bundles: readonly TrustBundle[] };

/**
 * Rejects what can never name a secret, before any stream state changes: more than MAX_SDS_RESOURCE_NAMES names, an
 * empty name, a name over 2048 bytes, or a `spiffe://` name that is not a valid SPIFFE ID (SPEC-NOTES §2, §7: a
 * malformed SPIFFE ID is INVALID_ARGUMENT). Throws MeshidError(invalid_argument).
 */
export function checkResourceNames(names: readonly string[], field = 'resource_names'): void {
  if (names.length > MAX_SDS_RESOURCE_NAMES) {
    throw invalidArgument(`${field} has ${names.length} names; at most ${MAX_SDS_RESOURCE_NAMES} are accepted`);
  }
  for (const name of names) checkResourceName(name, field);
}

function checkResourceName(name: string, field: string): void {
  if (name === '') throw invalidArgument(`${field} contains an empty name`);
  if (Buffer.byteLength(name) > MAX_RESOURCE_NAME_BYTES) {
    throw invalidArgument(`${field} contains a name longer than ${MAX_RESOURCE_NAME_BYTES} bytes`);
  }
  if (name.startsWith('spiffe://')) parseSpiffeId(name);
}

/** Whether a name is the xDS wildcard `*` (explicit wildcard subscription). */
export function isWildcardName(name: string): boolean {
  return name === WILDCARD_NAME;
}

function byTrustDomain(a: TrustBundle, b: TrustBundle): number {
  return a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0;
}

/**
 * Bundles that can authenticate something: a trust domain without X.509 roots is left out (Envoy fails to load an
 * empty trust bundle), and a trust domain appears once, sorted by name as SPIRE does for `ALL`.
 */
function usableBundles(bundles: readonly TrustBundle[]): TrustBundle[] {
  const seen = new Set<string>();
  const out: TrustBundle[] = [];
  for (const b of [...bundles].sort(byTrustDomain)) {
    if (b.x509Authorities.length === 0 || seen.has(b.trustDomain)) continue;
    seen.add(b.trustDomain);
    out.push(b);
  }
  return out;
}

function validationContext(bundles: readonly TrustBundle[]): SdsResource | undefined {
  const usable = usableBundles(bundles);
  return usable.length === 0 ? undefined : { kind: 'validation_context', bundles: usable };
}

/**
 * Resolves one name for a caller (SPEC-NOTES §9):
 * - `defaultSvidName` → the default identity's SVID (the oldest matching entry's) as soon as it is issued; while it
 *   is not, nothing, since svids[0] is then another identity and Envoy would present the wrong certificate. Siblings
 *   still waiting for their SVIDs do not hold it back (a new entry would otherwise take `default` away until its
 *   SVID arrives);
 * - `spiffe://td/path` → that SVID if the caller holds it (byte-exact comparison);
 * - `defaultBundleName` or `spiffe://<own td>` → the own trust domain;
 * - `spiffe://<foreign td>` → that federated bundle, if the caller's entries federate with it;
 * - `defaultAllBundlesName` → own + federated trust domains in one validation context, in mode `spiffe` only: never
 *   merged into one `trusted_ca`, where a federated root would vouch for every trust domain's IDs. A request naming
 *   it under `trusted_ca` is refused before (checkAllBundlesName); here it is what keeps a wildcard from holding it.
 * Anything else, including an identity the caller is not entitled to, is undefined. A caller without entries has
 * no SVIDs and no federated bundles, so with `allowUnauthenticatedVerifiers` only the own trust domain resolves.
 */
export function resolveResourceName(
  snapshot: IdentitySnapshot,
  name: string,
  options: ResolvedSdsOptions,
  mode: ValidationMode,
): SdsResource | undefined {
  if (!snapshot.entitled && !options.allowUnauthenticatedVerifiers) return undefined;
  if (name === options.defaultSvidName) {
    const svid = snapshot.defaultSvid;
    return svid === undefined ? undefined : { kind: 'tls_certificate', svid };
  }
  if (name === options.defaultBundleName) return validationContext([snapshot.bundle]);
  if (name === options.defaultAllBundlesName) {
    return mode === 'spiffe' ? validationContext([snapshot.bundle, ...snapshot.federatedBundles]) : undefined;
  }
  if (!name.startsWith('spiffe://')) return undefined;
  let path: string;
  let trustDomain: string;
  try {
    ({ path, trustDomain } = parseSpiffeId(name));
  } catch {
    return undefined;
  }
  if (path !== '') {
    const svid = snapshot.svids.find((s) => s.spiffeId === name);
    return svid === undefined ? undefined : { kind: 'tls_certificate', svid };
  }
  if (trustDomain === snapshot.bundle.trustDomain) return validationContext([snapshot.bundle]);
  const federated = snapshot.federatedBundles.find((b) => b.trustDomain === trustDomain);
  return federated === undefined ? undefined : validationContext([federated]);
}

/**
 * Every name that resolves for this caller right now — what a wildcard subscription (empty first request, or `*`)
 * receives: the default SVID alias, each SVID by SPIFFE ID, the `ROOTCA` alias, the `ALL` alias (SPIFFE validator
 * only), and each trust domain by its ID (`spiffe://td`). In a stable order: SVIDs first, then validation contexts.
 */
export function entitledResourceNames(
  snapshot: IdentitySnapshot,
  options: ResolvedSdsOptions,
  mode: ValidationMode,
): string[] {
  if (!snapshot.entitled && !options.allowUnauthenticatedVerifiers) return [];
  const candidates = [
    options.defaultSvidName,
    ...snapshot.svids.map((s) => s.spiffeId),
    options.defaultBundleName,
    options.defaultAllBundlesName,
    trustDomainId(snapshot.bundle.trustDomain),
    ...snapshot.federatedBundles.map((b) => trustDomainId(b.trustDomain)),
  ];
  return [...new Set(candidates)].filter((name) => resolveResourceName(snapshot, name, options, mode) !== undefined);
}
