import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { bundleService } from '../../../src/server/api/bundle-service.js';
import { federationService } from '../../../src/server/api/federation-service.js';
import { FederatedBundlePoller } from '../../../src/server/federation/bundle-poller.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

type Handler = (call: { request: unknown }, cb: (err: ServiceError | null) => void) => void;

/**
 * The handlers are called directly (no gRPC transport: stubbed call objects; the poller is never started, so nothing
 * is fetched), both in one tick, as grpc-js does when both requests' frames arrive in one read: each reads the stored
 * bundle before either writes.
 */
test('CreateFederationRelationship with a bundle and SetFederatedBundle for its trust domain started in one tick (stubbed gRPC call objects, poller not started): the create is ABORTED saying to run it again, not refused over a sequence nobody gave', async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { ca, ds, clock, close } = await openTestCa(tmp.dir);
  t.after(close);
  const poller = new FederatedBundlePoller([], ds, clock, silentLogger(), async () => {
    throw new Error('not fetched in this test');
  });
  t.after(() => poller.stop());
  const call = (handler: unknown, request: unknown): Promise<ServiceError | null> =>
    new Promise((resolve) => (handler as Handler)({ request }, (err) => resolve(err)));
  const bundles = bundleService(ds, ca, poller, clock, silentLogger());
  const federation = federationService(poller, ds, 'example.org', clock, silentLogger());
  const partners = [new TestCa('partner.org'), new TestCa('partner.org')];
  t.after(() => partners.forEach((p) => p.dispose()));
  const errors = await Promise.all([
    call(bundles.SetFederatedBundle, { trust_domain: 'partner.org', bundle: certificatesToPem([partners[0]!.rootDer]) }),
    call(federation.CreateFederationRelationship, {
      relationship: { trust_domain: 'partner.org', bundle_endpoint_url: 'https://partner.org/bundle', bundle_endpoint_profile: 'https_web' },
      bundle: certificatesToPem([partners[1]!.rootDer]),
    }),
  ]);
  assert.deepEqual(errors.map((e) => e?.code ?? status.OK), [status.OK, status.ABORTED]);
  assert.match(errors[1]!.details, /^the bundle of partner\.org was changed by another writer .*: run the command again$/);
  const stored = await ds.getBundle('partner.org');
  assert.deepEqual(stored?.x509Authorities, [partners[0]!.rootDer]);
  assert.equal(stored?.sequence, 1);
  assert.deepEqual(await ds.listFederationRelationships(), [], 'the refused create leaves no relationship behind');
});
