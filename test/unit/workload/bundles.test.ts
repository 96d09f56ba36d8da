import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { splitConcatenatedDer } from '../../../src/common/x509/pem.js';
import { grpcCode } from '../../../src/agent/cli/workload-client.js';
import type { JwtBundlesResponse, X509BundlesResponse } from '../../../src/agent/workload/messages.js';
import { foreignBundle, makeJwtKey, TestCa } from '../../support/fake-workload-cache.js';
import { APP_A, FOREIGN_TD, SELECTOR_A, startWorkloadHarness, TD, within, type WorkloadHarness } from './workload-harness.js';

const PERMISSION_DENIED = 7;
const OWN = `spiffe://${TD}`;
const FOREIGN = `spiffe://${FOREIGN_TD}`;

async function drainImmediates(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

function jwks(bytes: Buffer | undefined): { keys: Array<Record<string, unknown>> } {
  assert.ok(bytes !== undefined);
  return JSON.parse(bytes.toString('utf8')) as { keys: Array<Record<string, unknown>> };
}

let ca: TestCa;
let partner: TestCa;
const partnerKey = makeJwtKey('partner-key-1');
let h: WorkloadHarness;
before(async () => {
  ca = new TestCa(TD);
  partner = new TestCa(FOREIGN_TD);
  h = await startWorkloadHarness(ca, (cache) => {
    cache.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
    cache.setFederatedBundle(foreignBundle(partner, 3, partnerKey));
  });
});
after(async () => {
  await h.close();
  ca.dispose();
  partner.dispose();
});

describe('FetchX509Bundles (attestation stubbed: caller has unix:uid:1001)', () => {
  test('bundles holds the own and the federated trust domain, keyed spiffe://<td>, as DER roots', async () => {
    const res = await h.client.fetchX509Bundles();
    assert.deepEqual(Object.keys(res.bundles).sort(), [OWN, FOREIGN].sort());
    assert.deepEqual(splitConcatenatedDer(res.bundles[OWN]!), [ca.rootDer]);
    assert.deepEqual(splitConcatenatedDer(res.bundles[FOREIGN]!), [partner.rootDer]);
  });

  test('agrees with FetchX509SVID bundle and federated_bundles', async () => {
    const [bundles, svids] = await Promise.all([h.client.fetchX509Bundles(), h.client.fetchX509Svid()]);
    assert.deepEqual(bundles.bundles[OWN], svids.svids[0]!.bundle);
    assert.deepEqual(bundles.bundles[FOREIGN], svids.federated_bundles![FOREIGN]);
  });

  test('a federated root change is pushed; a change of JWT keys only is not (identical X.509 content)', async () => {
    const watch = h.client.watchX509Bundles();
    try {
      await within(watch.next(), 'first message');
      h.cache.bumpOwnBundle([makeJwtKey('own-key-rotated')]);
      await drainImmediates();
      const other = new TestCa(FOREIGN_TD);
      h.cache.setFederatedBundle(foreignBundle(other, 4, partnerKey));
      other.dispose();
      const m2 = (await within(watch.next(), 'after the federated root changed')).value as X509BundlesResponse;
      assert.deepEqual(splitConcatenatedDer(m2.bundles[FOREIGN]!), [other.rootDer], 'the next message is the root change, not a duplicate');
    } finally {
      watch.cancel();
      h.cache.setFederatedBundle(foreignBundle(partner, 5, partnerKey));
      h.cache.bumpOwnBundle();
    }
  });

  test('an unregistered caller gets PERMISSION_DENIED (default deny)', async () => {
    h.caller = [{ type: 'unix', value: 'uid:4242' }];
    try {
      const err = await h.client.fetchX509Bundles().then(() => undefined, (e: unknown) => e);
      assert.equal(grpcCode(err), PERMISSION_DENIED);
    } finally {
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
    }
  });
});

describe('FetchJWTBundles (attestation stubbed: caller has unix:uid:1001)', () => {
  test('bundles are JWK Set JSON per trust domain, own and federated, with only public jwt-svid keys', async () => {
    const res = await h.client.fetchJwtBundles();
    assert.deepEqual(Object.keys(res.bundles).sort(), [OWN, FOREIGN].sort());
    const own = jwks(res.bundles[OWN]);
    assert.equal(own.keys.length, 1);
    const key = own.keys[0]!;
    assert.equal(key['kid'], h.cache.jwtKey.kid);
    for (const member of ['d', 'x5c', 'use']) assert.ok(!(member in key), `no "${member}"`);
    const pub = createPublicKey({ key: key as never, format: 'jwk' });
    assert.ok(pub.equals(h.cache.jwtKey.publicKey));
    assert.deepEqual(jwks(res.bundles[FOREIGN]).keys.map((k) => k['kid']), ['partner-key-1']);
  });

  test('a JWT key rotation is pushed; a spurious notification is not', async () => {
    const watch = h.client.watchJwtBundles();
    try {
      await within(watch.next(), 'first message');
      h.cache.notify();
      await drainImmediates();
      const rotated = makeJwtKey('own-key-next');
      h.cache.bumpOwnBundle([h.cache.jwtKey, rotated]);
      const m2 = (await within(watch.next(), 'after rotation')).value as JwtBundlesResponse;
      assert.deepEqual(jwks(m2.bundles[OWN]).keys.map((k) => k['kid']), [h.cache.jwtKey.kid, 'own-key-next']);
    } finally {
      watch.cancel();
      h.cache.bumpOwnBundle();
    }
  });

  test('an unregistered caller gets PERMISSION_DENIED (default deny)', async () => {
    h.caller = [{ type: 'unix', value: 'uid:4242' }];
    try {
      const err = await h.client.fetchJwtBundles().then(() => undefined, (e: unknown) => e);
      assert.equal(grpcCode(err), PERMISSION_DENIED);
    } finally {
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
    }
  });
});

describe('allowUnauthenticatedVerifiers (attestation stubbed)', () => {
  const SELECTOR_V = 'unix:uid:1003';
  const VERIFIER = 'spiffe://example.org/verifier';
  let v: WorkloadHarness;
  before(async () => {
    v = await startWorkloadHarness(ca, (cache) => {
      cache.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
      cache.addEntry(SELECTOR_V, VERIFIER, { federatesWith: [FOREIGN_TD] });
      cache.setFederatedBundle(foreignBundle(partner, 3, partnerKey));
    }, { options: { allowUnauthenticatedVerifiers: true }, caller: ['unix:uid:4242'] });
  });
  after(() => v.close());

  test('a caller no entry matches gets the own trust domain\'s X.509 and JWT bundles, and no federated one', async () => {
    const x509 = await v.client.fetchX509Bundles();
    assert.deepEqual(Object.keys(x509.bundles), [OWN]);
    assert.deepEqual(splitConcatenatedDer(x509.bundles[OWN]!), [ca.rootDer]);
    const jwt = await v.client.fetchJwtBundles();
    assert.deepEqual(Object.keys(jwt.bundles), [OWN]);
    assert.deepEqual(jwks(jwt.bundles[OWN]).keys.map((k) => k['kid']), [v.cache.jwtKey.kid]);
  });

  test('identities stay denied to it: FetchX509SVID and FetchJWTSVID are PERMISSION_DENIED', async () => {
    assert.equal(grpcCode(await v.client.fetchX509Svid().then(() => undefined, (e: unknown) => e)), PERMISSION_DENIED);
    assert.equal(grpcCode(await v.client.fetchJwtSvid(['db']).then(() => undefined, (e: unknown) => e)), PERMISSION_DENIED);
  });

  test('a bundle stream outlives its caller\'s last entry: the federated bundle goes, the own one stays', async () => {
    v.caller = [{ type: 'unix', value: 'uid:1003' }];
    const watch = v.client.watchX509Bundles();
    try {
      const first = (await within(watch.next(), 'first message')).value as X509BundlesResponse;
      assert.deepEqual(Object.keys(first.bundles).sort(), [OWN, FOREIGN].sort());
      v.cache.removeEntry(VERIFIER);
      const next = await within(watch.next(), 'after the entry was removed');
      assert.equal(next.done, false, 'the stream goes on');
      assert.deepEqual(Object.keys((next.value as X509BundlesResponse).bundles), [OWN]);
    } finally {
      watch.cancel();
      v.caller = [{ type: 'unix', value: 'uid:4242' }];
    }
  });
});
