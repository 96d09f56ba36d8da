import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { unpackAny } from '../../../src/common/grpc/proto.js';
import type { WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import type { SdsResource } from '../../../src/agent/sds/resource-names.js';
import { buildSecret, resourceVersion, SECRET_TYPE_NAME } from '../../../src/agent/sds/secret-builder.js';
import { sharedResourceVersion, sharedSecret } from '../../../src/agent/sds/secret-memo.js';

function svid(leaf: string): WorkloadSvid {
  return {
    entryId: 'e1',
    spiffeId: 'spiffe://example.org/a',
    hint: '',
    chain: [Buffer.from(leaf), Buffer.from('intermediate')],
    privateKey: Buffer.from(`key of ${leaf}`),
    notBefore: 0,
    notAfter: 1,
    version: leaf,
  };
}

function bundle(trustDomain: string, root: string, sequence = 1): TrustBundle {
  return { trustDomain, x509Authorities: [Buffer.from(root)], jwtAuthorities: [], sequence };
}

const tls = (s: WorkloadSvid): SdsResource => ({ kind: 'tls_certificate', svid: s });
const roots = (...bundles: TrustBundle[]): SdsResource => ({ kind: 'validation_context', bundles });

describe('SDS secrets shared between streams', () => {
  it('the same SVID object and name give the very same Secret bytes, equal to a fresh build', () => {
    const s = svid('leaf-1');
    const a = sharedSecret('default', tls(s), 'spiffe');
    const b = sharedSecret('default', tls(s), 'trusted_ca');
    assert.equal(a, b);
    assert.deepEqual(a.value, buildSecret('default', tls(s), 'spiffe').value);
    assert.equal(sharedResourceVersion('default', tls(s), 'spiffe'), resourceVersion(tls(s), 'spiffe'));
  });

  it('a secret is named as requested: an alias gets its own Secret.name', () => {
    const s = svid('leaf-2');
    const byAlias = unpackAny(sharedSecret('default', tls(s), 'spiffe'), SECRET_TYPE_NAME);
    const byId = unpackAny(sharedSecret('spiffe://example.org/a', tls(s), 'spiffe'), SECRET_TYPE_NAME);
    assert.equal(byAlias['name'], 'default');
    assert.equal(byId['name'], 'spiffe://example.org/a');
  });

  it('a re-issued SVID (new object) or one changed in place (new version) gets new bytes and a new version', () => {
    const s = svid('leaf-3');
    const before = sharedSecret('default', tls(s), 'spiffe');
    const versionBefore = sharedResourceVersion('default', tls(s), 'spiffe');
    const next = svid('leaf-4');
    assert.notDeepEqual(sharedSecret('default', tls(next), 'spiffe').value, before.value);
    const mutated = s as { -readonly [K in keyof WorkloadSvid]: WorkloadSvid[K] };
    mutated.chain = [Buffer.from('leaf-5'), Buffer.from('intermediate')];
    mutated.version = 'leaf-5';
    assert.notEqual(sharedResourceVersion('default', tls(s), 'spiffe'), versionBefore);
    assert.deepEqual(sharedSecret('default', tls(s), 'spiffe').value, buildSecret('default', tls(s), 'spiffe').value);
  });

  it('validation contexts are shared per bundle set and mode, and follow a new sequence or another bundle set', () => {
    const own = bundle('example.org', 'root-1');
    const fed = bundle('other.org', 'root-2');
    assert.equal(sharedSecret('ROOTCA', roots(own), 'spiffe'), sharedSecret('ROOTCA', roots(own), 'spiffe'));
    assert.notEqual(sharedSecret('ROOTCA', roots(own), 'spiffe'), sharedSecret('ROOTCA', roots(own), 'trusted_ca'));
    assert.notEqual(sharedResourceVersion('ALL', roots(own), 'spiffe'), sharedResourceVersion('ALL', roots(own, fed), 'spiffe'));
    const rotated = { ...own, x509Authorities: [Buffer.from('root-3')], sequence: 2 };
    assert.deepEqual(sharedSecret('ROOTCA', roots(rotated), 'spiffe').value, buildSecret('ROOTCA', roots(rotated), 'spiffe').value);
    assert.notEqual(sharedResourceVersion('ROOTCA', roots(rotated), 'spiffe'), sharedResourceVersion('ROOTCA', roots(own), 'spiffe'));
  });

  it('a bundle updated in place (new sequence, new roots) gets fresh bytes and a new version, in both modes', () => {
    const own = bundle('example.org', 'root-6', 1) as { -readonly [K in keyof TrustBundle]: TrustBundle[K] };
    const before = { spiffe: sharedSecret('ROOTCA', roots(own), 'spiffe'), trusted: sharedSecret('ROOTCA', roots(own), 'trusted_ca') };
    const versionBefore = sharedResourceVersion('ROOTCA', roots(own), 'spiffe');
    own.x509Authorities = [Buffer.from('root-7')];
    own.sequence = 2;
    assert.deepEqual(sharedSecret('ROOTCA', roots(own), 'spiffe').value, buildSecret('ROOTCA', roots(own), 'spiffe').value);
    assert.deepEqual(sharedSecret('ROOTCA', roots(own), 'trusted_ca').value, buildSecret('ROOTCA', roots(own), 'trusted_ca').value);
    assert.notDeepEqual(sharedSecret('ROOTCA', roots(own), 'spiffe').value, before.spiffe.value);
    assert.notDeepEqual(sharedSecret('ROOTCA', roots(own), 'trusted_ca').value, before.trusted.value);
    assert.notEqual(sharedResourceVersion('ROOTCA', roots(own), 'spiffe'), versionBefore);
  });

  it('a bundle set whose later bundle is another object (same trust domain and sequence) is not served the first set\'s bytes', () => {
    // The memo hangs off the first bundle; the others are told apart by identity, not only by their sequence.
    const own = bundle('example.org', 'root-8');
    const fedA = bundle('other.org', 'partner-root-a', 5);
    const fedB = bundle('other.org', 'partner-root-b', 5);
    const a = sharedSecret('ALL', roots(own, fedA), 'spiffe');
    const b = sharedSecret('ALL', roots(own, fedB), 'spiffe');
    assert.notEqual(a, b);
    assert.deepEqual(b.value, buildSecret('ALL', roots(own, fedB), 'spiffe').value);
    assert.notEqual(sharedResourceVersion('ALL', roots(own, fedA), 'spiffe'), sharedResourceVersion('ALL', roots(own, fedB), 'spiffe'));
    assert.equal(sharedSecret('ALL', roots(own, fedA), 'spiffe'), a, 'the first set is still shared');
  });
});
