import { trustDomainId } from '../../common/spiffe/spiffe-id.js';
import type { IdentitySnapshot } from '../cache/workload-cache.js';
import { bundleDer, bundleJwks } from './der-memo.js';
import type { JwtBundlesResponse, X509BundlesResponse } from './messages.js';
import { federatedBundleMap, sameBufferMap } from './x509-response.js';

/**
 * X509BundlesResponse (WL-API §5.2.2; SPEC-NOTES §8): `spiffe://<own td>` → DER roots, always present, plus every
 * foreign trust domain the caller's entries federate with — the same bytes FetchX509SVID sends in `bundle` and
 * `federated_bundles`, so the two RPCs never disagree.
 */
export function x509BundlesResponse(snapshot: IdentitySnapshot): X509BundlesResponse {
  const own = snapshot.bundle;
  return {
    bundles: { [trustDomainId(own.trustDomain)]: bundleDer(own), ...federatedBundleMap(own.trustDomain, snapshot.federatedBundles) },
  };
}

/**
 * JWTBundlesResponse (WL-API §6.2.2; SPEC-NOTES §6, §8): `spiffe://<td>` → JWK Set JSON of the jwt-svid keys, for the
 * own trust domain (always, even with no keys: `{"keys":[]}`) and each federated one. A federated bundle is listed
 * even without JWT keys: an empty set says "no token of that domain is valid", which is what it means.
 */
export function jwtBundlesResponse(snapshot: IdentitySnapshot): JwtBundlesResponse {
  const own = snapshot.bundle;
  const bundles: Record<string, Buffer> = { [trustDomainId(own.trustDomain)]: bundleJwks(own) };
  for (const b of snapshot.federatedBundles) {
    const key = trustDomainId(b.trustDomain);
    if (!(key in bundles)) bundles[key] = bundleJwks(b);
  }
  return { bundles };
}

/** Same trust domains with the same bytes: an identical consecutive bundle message is never sent (SPEC-NOTES §8). */
export function sameBundlesResponse(a: { bundles: Record<string, Buffer> }, b: { bundles: Record<string, Buffer> }): boolean {
  return sameBufferMap(a.bundles, b.bundles);
}
