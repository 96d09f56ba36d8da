import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { jwtBundleJwks, x509BundleDer } from '../../common/spiffe/bundle.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';

/**
 * Wire encodings of cache values, computed once per value. Every open stream then shares one Buffer per chain or
 * bundle instead of concatenating DER (or exporting JWKs) again on every notification, and comparing two messages
 * for "same content" usually ends at a reference check. Entries are keyed by the object and checked against its
 * `version` / `sequence` (which change on every content change, workload-cache.ts and Bundle §4), so a cache that
 * updated an object in place still gets fresh bytes.
 */
interface Memo {
  readonly stamp: string | number;
  readonly value: Buffer;
}

const chains = new WeakMap<WorkloadSvid, Memo>();
const x509Bundles = new WeakMap<TrustBundle, Memo>();
const jwtBundles = new WeakMap<TrustBundle, Memo>();

function memoized<K extends object>(memo: WeakMap<K, Memo>, key: K, stamp: string | number, compute: () => Buffer): Buffer {
  const hit = memo.get(key);
  if (hit !== undefined && hit.stamp === stamp) return hit.value;
  const value = compute();
  memo.set(key, { stamp, value });
  return value;
}

/** The SVID's chain as the Workload API carries it: concatenated DER, leaf first (SPEC-NOTES §1, §8). */
export function chainDer(svid: WorkloadSvid): Buffer {
  return memoized(chains, svid, svid.version, () => Buffer.concat(svid.chain));
}

/** The bundle's X.509 roots as concatenated DER (SPEC-NOTES §1). */
export function bundleDer(bundle: TrustBundle): Buffer {
  return memoized(x509Bundles, bundle, bundle.sequence, () => x509BundleDer(bundle));
}

/** The bundle's JWT keys as the UTF-8 JWK Set JSON of JWTBundlesResponse (SPEC-NOTES §6). */
export function bundleJwks(bundle: TrustBundle): Buffer {
  return memoized(jwtBundles, bundle, bundle.sequence, () => Buffer.from(jwtBundleJwks(bundle), 'utf8'));
}
