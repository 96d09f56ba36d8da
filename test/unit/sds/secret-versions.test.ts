/**
 * What the SDS versions (secret-builder.ts resourceVersion, stateVersion) and the type check cover: an Envoy that
 * reconnects with initial_resource_versions is sent a secret again exactly when what it holds differs from what it
 * would be sent now.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { isMeshidError } from '../../../src/common/errors.js';
import type { WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import type { SdsResource } from '../../../src/agent/sds/resource-names.js';
import { checkTypeUrl, resourceVersion, SECRET_TYPE_URL, stateVersion } from '../../../src/agent/sds/secret-builder.js';

function svid(chain: string[]): SdsResource {
  const s: WorkloadSvid = {
    entryId: 'e1',
    spiffeId: 'spiffe://example.org/a',
    hint: '',
    chain: chain.map((c) => Buffer.from(c)),
    privateKey: Buffer.from('key'),
    notBefore: 0,
    notAfter: 1,
    version: chain.join('/'),
  };
  return { kind: 'tls_certificate', svid: s };
}

function bundle(trustDomain: string, root: string): TrustBundle {
  return { trustDomain, x509Authorities: [Buffer.from(root)], jwtAuthorities: [], sequence: 1 };
}

test('a validation context has a version per form: one held as trusted_ca is sent again to an Envoy now given the SPIFFE validator', () => {
  // The form follows the agent's config and the Envoy's node; either can change across a reconnect (an agent restarted
  // with another mode), and a version equal across forms would leave the Envoy with the form it no longer asks for.
  const roots: SdsResource = { kind: 'validation_context', bundles: [bundle('example.org', 'root-1')] };
  assert.notEqual(resourceVersion(roots, 'spiffe'), resourceVersion(roots, 'trusted_ca'));
  assert.equal(resourceVersion(roots, 'spiffe'), resourceVersion({ kind: 'validation_context', bundles: [bundle('example.org', 'root-1')] }, 'spiffe'));
});

test('a certificate\'s version covers its whole chain: the same leaf under a re-issued intermediate is a new version', () => {
  // Envoy presents the whole chain to its peers: should the intermediates change under the same leaf (an intermediate
  // re-issued over the same key), a version of the leaf alone would leave it presenting the old ones.
  assert.notEqual(resourceVersion(svid(['leaf', 'intermediate-1']), 'spiffe'), resourceVersion(svid(['leaf', 'intermediate-2']), 'spiffe'));
  assert.equal(resourceVersion(svid(['leaf', 'intermediate-1']), 'spiffe'), resourceVersion(svid(['leaf', 'intermediate-1']), 'trusted_ca'), 'a certificate has one form');
});

test('the state version of a set of secrets does not depend on the order the names were added in', () => {
  const a = new Map([['default', 'v1'], ['ROOTCA', 'v2'], ['spiffe://example.org/b', 'v3']]);
  const b = new Map([['spiffe://example.org/b', 'v3'], ['default', 'v1'], ['ROOTCA', 'v2']]);
  assert.equal(stateVersion(a), stateVersion(b));
  assert.notEqual(stateVersion(a), stateVersion(new Map([['default', 'v1'], ['ROOTCA', 'v2'], ['spiffe://example.org/b', 'v4']])));
  assert.notEqual(stateVersion(new Map()), '', 'never empty');
});

test('a request may leave type_url empty (SDS serves one type), or name the Secret type; any other is INVALID_ARGUMENT', () => {
  assert.doesNotThrow(() => checkTypeUrl(undefined));
  assert.doesNotThrow(() => checkTypeUrl(''));
  assert.doesNotThrow(() => checkTypeUrl(SECRET_TYPE_URL));
  assert.throws(() => checkTypeUrl('type.googleapis.com/envoy.config.cluster.v3.Cluster'), (err: unknown) => isMeshidError(err, 'invalid_argument'));
});
