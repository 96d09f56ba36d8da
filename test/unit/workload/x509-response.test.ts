import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import type { WorkloadSvid } from '../../../src/agent/cache/workload-cache.js';
import { jwtBundlesResponse, x509BundlesResponse } from '../../../src/agent/workload/bundles-response.js';
import { federatedBundleMap, sameX509SvidResponse, x509SvidResponse } from '../../../src/agent/workload/x509-response.js';
import { foreignBundle, makeJwtKey, servedSnapshot, TestCa } from '../../support/fake-workload-cache.js';

/*
 * x509SvidResponse shares one response object between snapshots with the same content (x509-response.ts): by the
 * cache objects it came from and by their versions, hints and sequences. Every change of either kind must give a new
 * response carrying the new bytes, never the shared one built before the change.
 */

const APP_A = 'spiffe://example.org/app/a';
const APP_B = 'spiffe://example.org/app/b';

let ca: TestCa;
let foreign: TestCa;
let other: TestCa;
before(() => {
  ca = new TestCa('example.org');
  foreign = new TestCa('partner.example');
  other = new TestCa('other.example');
});
after(() => {
  ca.dispose();
  foreign.dispose();
  other.dispose();
});

test('a sibling SVID in another object with the same version is not served from the shared response', () => {
  const a = ca.issue(APP_A);
  const b = ca.issue(APP_B);
  const bundle = ca.bundle(1);
  const first = x509SvidResponse(servedSnapshot([a, b], bundle, []))!;
  const lookalike = { ...b, privateKey: Buffer.from('another key') };
  const second = x509SvidResponse(servedSnapshot([a, lookalike], bundle, []))!;
  assert.notEqual(second, first);
  assert.deepEqual(second.svids[1]!.x509_svid_key, Buffer.from('another key'));
});

test('an SVID re-issued in place (same object, new version and chain) gives a new response with the new chain', () => {
  const a = ca.issue(APP_A) as { -readonly [K in keyof WorkloadSvid]: WorkloadSvid[K] };
  const bundle = ca.bundle(1);
  const first = x509SvidResponse(servedSnapshot([a], bundle, []))!;
  const reissued = ca.issue(APP_A);
  Object.assign(a, { chain: reissued.chain, privateKey: reissued.privateKey, version: reissued.version });
  const second = x509SvidResponse(servedSnapshot([a], bundle, []))!;
  assert.notEqual(second, first);
  assert.deepEqual(second.svids[0]!.x509_svid, Buffer.concat(reissued.chain));
  assert.deepEqual(second.svids[0]!.x509_svid_key, reissued.privateKey);
});

test('a hint changed in place gives a new response with the new hint', () => {
  const a = { ...ca.issue(APP_A), hint: 'internal' };
  const bundle = ca.bundle(1);
  const first = x509SvidResponse(servedSnapshot([a], bundle, []))!;
  assert.equal(first.svids[0]!.hint, 'internal');
  Object.assign(a, { hint: 'external' });
  const second = x509SvidResponse(servedSnapshot([a], bundle, []))!;
  assert.equal(second.svids[0]!.hint, 'external');
});

test('a federated bundle updated in place (same object, next sequence) gives a new response with its new roots', () => {
  const a = ca.issue(APP_A);
  const bundle = ca.bundle(1);
  const partner = foreignBundle(foreign, 1);
  const first = x509SvidResponse(servedSnapshot([a], bundle, [partner]))!;
  assert.deepEqual(first.federated_bundles?.['spiffe://partner.example'], foreign.rootDer);
  Object.assign(partner, { x509Authorities: [foreign.rootDer, other.rootDer], sequence: 2 });
  const second = x509SvidResponse(servedSnapshot([a], bundle, [partner]))!;
  assert.deepEqual(second.federated_bundles?.['spiffe://partner.example'], Buffer.concat([foreign.rootDer, other.rootDer]));
});

test('another own-bundle object with the same sequence is not trusted to hold the same roots', () => {
  const a = ca.issue(APP_A);
  const first = x509SvidResponse(servedSnapshot([a], ca.bundle(1), []))!;
  const rerooted = { ...ca.bundle(1), x509Authorities: [ca.rootDer, other.rootDer] };
  const second = x509SvidResponse(servedSnapshot([a], rerooted, []))!;
  assert.notEqual(second, first);
  assert.deepEqual(second.svids[0]!.bundle, Buffer.concat([ca.rootDer, other.rootDer]));
});

test('a federated bundle with no X.509 roots (JWT keys only) is not listed in federated_bundles or FetchX509Bundles', () => {
  const a = ca.issue(APP_A);
  const jwtOnly: TrustBundle = { ...foreignBundle(foreign, 1), x509Authorities: [] };
  const snapshot = servedSnapshot([a], ca.bundle(1), [jwtOnly, foreignBundle(other, 1)]);
  assert.deepEqual(Object.keys(x509SvidResponse(snapshot)!.federated_bundles ?? {}), ['spiffe://other.example']);
  assert.deepEqual(Object.keys(x509BundlesResponse(snapshot).bundles).sort(), ['spiffe://example.org', 'spiffe://other.example']);
});

test('a trust domain listed twice among federated bundles keeps its first bundle', () => {
  const first = foreignBundle(foreign, 2);
  const stale = { ...foreignBundle(foreign, 1), x509Authorities: [other.rootDer] };
  assert.deepEqual(federatedBundleMap('example.org', [first, stale]), { 'spiffe://partner.example': foreign.rootDer });
});

test('sameX509SvidResponse tells apart responses that differ in any one field on the wire', () => {
  const a = { ...ca.issue(APP_A), hint: 'internal' };
  const bundle = ca.bundle(1);
  const base = x509SvidResponse(servedSnapshot([a], bundle, [foreignBundle(foreign, 1)]))!;
  const svid = base.svids[0]!;
  const variants: Array<[string, typeof base]> = [
    ['spiffe_id', { ...base, svids: [{ ...svid, spiffe_id: APP_B }] }],
    ['hint', { ...base, svids: [{ ...svid, hint: 'external' }] }],
    ['no hint', { ...base, svids: [{ ...svid, hint: undefined }] }],
    ['x509_svid', { ...base, svids: [{ ...svid, x509_svid: Buffer.concat([svid.x509_svid, other.rootDer]) }] }],
    ['x509_svid_key', { ...base, svids: [{ ...svid, x509_svid_key: Buffer.from('another key') }] }],
    ['bundle (a root added)', { ...base, svids: [{ ...svid, bundle: Buffer.concat([ca.rootDer, other.rootDer]) }] }],
    ['federated_bundles', { ...base, federated_bundles: { 'spiffe://partner.example': other.rootDer } }],
    ['one more SVID', { ...base, svids: [svid, svid] }],
  ];
  for (const [what, variant] of variants) {
    assert.equal(sameX509SvidResponse(base, variant), false, what);
    assert.equal(sameX509SvidResponse(variant, base), false, `${what} (reversed)`);
  }
  const copy = { svids: [{ ...svid, x509_svid: Buffer.from(svid.x509_svid), bundle: Buffer.from(svid.bundle) }], federated_bundles: { ...base.federated_bundles } };
  assert.equal(sameX509SvidResponse(base, copy), true, 'equal bytes in other buffers are the same content');
});

test('a hint of exactly 1024 bytes is served; one of 1025 bytes, or of 1024 characters that are 2048 bytes, is not', () => {
  const bundle = ca.bundle(1);
  const hintOf = (hint: string) => x509SvidResponse(servedSnapshot([{ ...ca.issue(APP_A), hint }], bundle, []))!.svids[0]!.hint;
  assert.equal(hintOf('h'.repeat(1024)), 'h'.repeat(1024));
  assert.equal(hintOf('h'.repeat(1025)), undefined);
  assert.equal(hintOf('é'.repeat(1024)), undefined);
  assert.equal(hintOf('é'.repeat(512)), 'é'.repeat(512));
});

test('FetchJWTBundles keeps the own trust domain\'s keys even when a cache lists the own domain among federated bundles', () => {
  const own = { ...ca.bundle(1), jwtAuthorities: [] };
  const impostor: TrustBundle = { ...foreignBundle(foreign, 1, makeJwtKey('impostor')), trustDomain: 'example.org' };
  const response = jwtBundlesResponse(servedSnapshot([ca.issue(APP_A)], own, [impostor]));
  assert.deepEqual(Object.keys(response.bundles), ['spiffe://example.org']);
  assert.deepEqual(JSON.parse(response.bundles['spiffe://example.org']!.toString('utf8')), { keys: [] });
});

test('a bundle updated in place with new JWT keys and the next sequence gives FetchJWTBundles the new keys', () => {
  const own = { ...ca.bundle(1), jwtAuthorities: [{ kid: 'k1', publicKey: makeJwtKey('k1').publicKey }] };
  const snapshot = servedSnapshot([ca.issue(APP_A)], own, []);
  const kids = () => (JSON.parse(jwtBundlesResponse(snapshot).bundles['spiffe://example.org']!.toString('utf8')) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
  assert.deepEqual(kids(), ['k1']);
  Object.assign(own, { jwtAuthorities: [{ kid: 'k2', publicKey: makeJwtKey('k2').publicKey }], sequence: 2 });
  assert.deepEqual(kids(), ['k2']);
});
