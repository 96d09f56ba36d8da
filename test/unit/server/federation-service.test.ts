import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { federationService } from '../../../src/server/api/federation-service.js';
import { FederatedBundlePoller } from '../../../src/server/federation/bundle-poller.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { withDatastore } from '../datastore/fixture.js';

type Handler = (call: { request: unknown }, cb: (err: ServiceError | null) => void) => void;

test("federation relationships: the config file's cannot be created over, changed or removed here; a deleted one is polled no more; a failed refresh is an error", async (t) => {
  await withDatastore(async ({ ds }) => {
    const clock = new FakeClock();
    const fromConfig = compileRelationships({ 'config.org': { bundle_endpoint_url: 'https://config.org/b', bundle_endpoint_profile: 'https_web' } }, 'example.org');
    const poller = new FederatedBundlePoller(fromConfig, ds, clock, silentLogger(), async () => {
      throw new Error('connection refused');
    });
    t.after(() => poller.stop());
    const svc = federationService(poller, ds, 'example.org', clock, silentLogger());
    const call = (method: string, request: unknown): Promise<ServiceError | null> =>
      new Promise((resolve) => (svc[method] as unknown as Handler)({ request }, (err) => resolve(err)));
    const rel = (td: string) => ({ relationship: { trust_domain: td, bundle_endpoint_url: `https://${td}/b`, bundle_endpoint_profile: 'https_web' } });

    assert.equal((await call('CreateFederationRelationship', rel('config.org')))?.code, status.ALREADY_EXISTS);
    assert.equal((await call('UpdateFederationRelationship', rel('config.org')))?.code, status.FAILED_PRECONDITION);
    assert.equal((await call('DeleteFederationRelationship', { trust_domain: 'config.org' }))?.code, status.FAILED_PRECONDITION);
    assert.equal(poller.status('config.org')?.relationship.bundleEndpointUrl, 'https://config.org/b', 'the config file\'s relationship is as it was');
    assert.deepEqual(await ds.listFederationRelationships(), []);

    assert.equal(await call('CreateFederationRelationship', rel('partner.org')), null);
    const refreshed = await call('RefreshBundle', { trust_domain: 'partner.org' });
    assert.equal(refreshed?.code, status.UNAVAILABLE);
    assert.match(refreshed!.details, /connection refused/);
    assert.equal(await call('DeleteFederationRelationship', { trust_domain: 'partner.org' }), null);
    assert.equal(poller.status('partner.org'), undefined, 'no longer polled');
    assert.equal((await call('RefreshBundle', { trust_domain: 'partner.org' }))?.code, status.NOT_FOUND);
  });
});
