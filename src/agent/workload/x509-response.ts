import { trustDomainId } from '../../common/spiffe/spiffe-id.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { IdentitySnapshot, WorkloadSvid } from '../cache/workload-cache.js';
import { bundleDer, chainDer } from './der-memo.js';
import { uniqueHints } from './hints.js';
import type { X509Svid, X509SvidResponse } from './messages.js';

/**
 * The X509SVIDResponse for a snapshot (WL-API §5; SPEC-NOTES §8, §14.1): one X509SVID per issued SVID in the
 * snapshot's order (svids[0] = default identity), each with its concatenated DER chain (leaf + intermediate), PKCS#8
 * DER key and the own trust domain's DER roots; SVIDs whose hint repeats an earlier one are left out; federated
 * bundles keyed `spiffe://<td>`, the own domain never among them. Undefined when there is no SVID to send: a
 * response without svids is default-valued and clients would discard it (§4.5), so none is ever built.
 */
export function x509SvidResponse(snapshot: IdentitySnapshot, onDuplicateHint?: DuplicateHint): X509SvidResponse | undefined {
  const first = snapshot.svids[0];
  if (first === undefined) return undefined;
  const key = contentKey(snapshot);
  const list = shared.get(first) ?? [];
  const hit = list.find((e) => e.key === key && sameSources(e, snapshot));
  if (hit !== undefined) return hit.response;
  const response = buildResponse(snapshot, onDuplicateHint);
  list.unshift({ key, svids: [...snapshot.svids], bundle: snapshot.bundle, federatedBundles: [...snapshot.federatedBundles], response });
  if (list.length > MAX_SHARED_PER_DEFAULT) list.pop();
  shared.set(first, list);
  return response;
}

/**
 * Responses already built, filed under the default SVID object they start with: callers with the same entitlements
 * get the same response object, which the Workload API encodes once (encode-once.ts). Held weakly, so an entry goes
 * when the cache lets go of that SVID (re-issued or removed) and keeps no key alive longer than the cache does.
 */
interface SharedResponse {
  readonly key: string;
  readonly svids: readonly WorkloadSvid[];
  readonly bundle: TrustBundle;
  readonly federatedBundles: readonly TrustBundle[];
  readonly response: X509SvidResponse;
}

/** Distinct entitlement sets sharing one default identity that are remembered; a dropped one is rebuilt. */
const MAX_SHARED_PER_DEFAULT = 8;
const shared = new WeakMap<WorkloadSvid, SharedResponse[]>();

/** What the response is built from, by value: each SVID's version and hint, each bundle's sequence. */
function contentKey(s: IdentitySnapshot): string {
  let key = `${s.bundle.trustDomain}#${s.bundle.sequence}`;
  for (const v of s.svids) key += `\n${v.entryId}#${v.version}#${v.spiffeId}#${v.hint}`;
  for (const b of s.federatedBundles) key += `\nF${b.trustDomain}#${b.sequence}`;
  return key;
}

/** The same cache objects as well as the same versions: a shared response never carries another object's bytes. */
function sameSources(e: SharedResponse, s: IdentitySnapshot): boolean {
  if (e.bundle !== s.bundle || e.svids.length !== s.svids.length || e.federatedBundles.length !== s.federatedBundles.length) return false;
  for (let i = 0; i < e.svids.length; i++) if (e.svids[i] !== s.svids[i]) return false;
  for (let i = 0; i < e.federatedBundles.length; i++) if (e.federatedBundles[i] !== s.federatedBundles[i]) return false;
  return true;
}

/** Told of an SVID left out for a hint an older one holds; once per response built, not per stream sent it. */
export type DuplicateHint = (dropped: WorkloadSvid, kept: WorkloadSvid) => void;

function buildResponse(snapshot: IdentitySnapshot, onDuplicateHint: DuplicateHint | undefined): X509SvidResponse {
  const bundle = bundleDer(snapshot.bundle);
  const svids: X509Svid[] = uniqueHints(snapshot.svids, onDuplicateHint).map(({ item, hint }) => {
    const svid: X509Svid = { spiffe_id: item.spiffeId, x509_svid: chainDer(item), x509_svid_key: item.privateKey, bundle };
    if (hint !== '') svid.hint = hint;
    return svid;
  });
  const response: X509SvidResponse = { svids };
  const federated = federatedBundleMap(snapshot.bundle.trustDomain, snapshot.federatedBundles);
  if (Object.keys(federated).length > 0) response.federated_bundles = federated;
  return response;
}

/**
 * `spiffe://<td>` → concatenated DER roots for each foreign trust domain that has X.509 roots (a JWT-only bundle
 * would be an empty value, which authenticates nothing). The own domain is skipped even if a cache lists it: it
 * must never appear among federated bundles (SPEC-NOTES §8). The first bundle of a domain listed twice wins.
 */
export function federatedBundleMap(ownTrustDomain: string, bundles: readonly TrustBundle[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const b of bundles) {
    if (b.trustDomain === ownTrustDomain || b.x509Authorities.length === 0) continue;
    const key = trustDomainId(b.trustDomain);
    if (!(key in out)) out[key] = bundleDer(b);
  }
  return out;
}

/** Same bytes in the same keys (map order is not significant on the wire). */
export function sameBufferMap(a: Readonly<Record<string, Buffer>> | undefined, b: Readonly<Record<string, Buffer>> | undefined): boolean {
  const ak = Object.keys(a ?? {});
  const bk = Object.keys(b ?? {});
  if (ak.length !== bk.length) return false;
  return ak.every((k) => b !== undefined && a !== undefined && b[k] !== undefined && sameBytes(a[k]!, b[k]!));
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a === b || a.equals(b);
}

/**
 * Whether two responses carry the same content, so a cache notification that changed nothing the caller sees sends
 * nothing (SPEC-NOTES §8: a message on every change, none otherwise). Compares every field that goes on the wire;
 * memoized buffers make this a reference check in the common case.
 */
export function sameX509SvidResponse(a: X509SvidResponse, b: X509SvidResponse): boolean {
  if (a === b) return true;
  if (a.svids.length !== b.svids.length) return false;
  for (let i = 0; i < a.svids.length; i++) {
    const x = a.svids[i]!;
    const y = b.svids[i]!;
    if (x.spiffe_id !== y.spiffe_id || (x.hint ?? '') !== (y.hint ?? '')) return false;
    if (!sameBytes(x.x509_svid, y.x509_svid) || !sameBytes(x.x509_svid_key, y.x509_svid_key) || !sameBytes(x.bundle, y.bundle)) return false;
  }
  return sameBufferMap(a.federated_bundles, b.federated_bundles);
}
