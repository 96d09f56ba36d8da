import type { AnyMessage } from '../../common/grpc/proto.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { SdsResource } from './resource-names.js';
import type { ValidationMode } from './node-validation-mode.js';
import { buildSecret, resourceVersion } from './secret-builder.js';

/**
 * Secrets and resource versions computed once per content, shared by every stream. One renewal reaches every Envoy
 * that watches the SVID; without this each stream would hash the chain, convert it and the key to PEM and encode the
 * Secret itself (and again on every ACK and unrelated notification), so the cost of a push grew with the number of
 * streams instead of the number of identities.
 *
 * Entries hang off the cache objects they were built from (the SVID, or the first trust bundle), held weakly: they
 * go when the cache lets go of that SVID or bundle, so no key material outlives the cache. Each entry is also checked
 * against the object's `version` / `sequence` and the exact objects it was built from, so a cache that updated an
 * object in place still gets fresh bytes (as der-memo.ts does for the Workload API).
 */

/** Names and forms a single SVID or bundle is served under are few (default, its SPIFFE ID, ROOTCA, ALL, ×2 modes). */
const MAX_PER_OBJECT = 16;

interface Built {
  readonly name: string;
  readonly mode: ValidationMode;
  /** The SVID's version, or the sequences of the bundles, when this was built. */
  readonly stamp: string;
  readonly sources: readonly object[];
  version?: string;
  secret?: AnyMessage;
}

const memo = new WeakMap<object, Built[]>();

function anchorOf(resource: SdsResource): object | undefined {
  return resource.kind === 'tls_certificate' ? resource.svid : resource.bundles[0];
}

function stampOf(resource: SdsResource): string {
  if (resource.kind === 'tls_certificate') return resource.svid.version;
  return resource.bundles.map((b: TrustBundle) => `${b.trustDomain}#${b.sequence}`).join('\n');
}

function sourcesOf(resource: SdsResource): readonly object[] {
  return resource.kind === 'tls_certificate' ? [resource.svid] : resource.bundles;
}

function sameSources(a: readonly object[], b: readonly object[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The memo slot for (resource, name, mode). The version does not depend on the name, but keeping one slot per name
 * keeps the lookup one list scan; the version is computed at most once per name, which is cheap.
 */
function slot(name: string, resource: SdsResource, mode: ValidationMode): Built {
  const anchor = anchorOf(resource);
  const stamp = stampOf(resource);
  const sources = sourcesOf(resource);
  // A tls_certificate Secret does not depend on the validation mode: one slot serves both.
  const slotMode: ValidationMode = resource.kind === 'tls_certificate' ? 'spiffe' : mode;
  if (anchor === undefined) return { name, mode: slotMode, stamp, sources };
  let list = memo.get(anchor);
  if (list === undefined) memo.set(anchor, (list = []));
  let hit = list.find((b) => b.name === name && b.mode === slotMode && b.stamp === stamp && sameSources(b.sources, sources));
  if (hit === undefined) {
    hit = { name, mode: slotMode, stamp, sources };
    list.unshift(hit);
    if (list.length > MAX_PER_OBJECT) list.pop();
  }
  return hit;
}

/** resourceVersion(resource, mode), computed once per content. */
export function sharedResourceVersion(name: string, resource: SdsResource, mode: ValidationMode): string {
  const s = slot(name, resource, mode);
  return (s.version ??= resourceVersion(resource, mode));
}

/** buildSecret(name, resource, mode), built once per content and name: every stream sends the same bytes. */
export function sharedSecret(name: string, resource: SdsResource, mode: ValidationMode): AnyMessage {
  const s = slot(name, resource, mode);
  return (s.secret ??= buildSecret(name, resource, mode));
}
