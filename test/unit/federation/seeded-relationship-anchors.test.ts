/**
 * `federation create|update --bundle-path` stores a trust domain's bundle as `bundle set` does, and a failing
 * relationship whose https_spiffe endpoint that trust domain hosts (Bundle §5.2.2.2) tries it at once, as after a
 * `bundle set`. The admin API's handlers on a real datastore and poller; the endpoints are stubbed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { bundleToSpiffeJson, type FederatedBundleDocument } from '../../../src/common/spiffe/bundle.js';
import { federationService } from '../../../src/server/api/federation-service.js';
import { FederatedBundlePoller } from '../../../src/server/federation/bundle-poller.js';
import { compileRelationships, type FederationRelationship } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { withDatastore } from '../datastore/fixture.js';

type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;

function call(handler: Handler, request: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => handler({ request } as ServerUnaryCall<unknown, unknown>, (err, res) => (err ? reject(err) : resolve(res))));
}

for (const method of ['CreateFederationRelationship', 'UpdateFederationRelationship'] as const) {
  test(`${method} with a bundle polls a failing relationship whose https_spiffe endpoint that trust domain hosts at once (stubbed endpoints)`, async (t) => {
    const host = new TestCa('host.example');
    const partner = new TestCa('partner.org');
    t.after(() => [host, partner].forEach((c) => c.dispose()));
    const [hostedRel] = compileRelationships(
      { 'partner.org': { bundle_endpoint_url: 'https://host.example/partner', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://host.example/bundles' } },
      'example.org',
    );
    const hostRelationship = { trust_domain: 'host.example', bundle_endpoint_url: 'https://host.example/', bundle_endpoint_profile: 'https_web' };
    await withDatastore(async ({ ds, clock }) => {
      let hostedCalls = 0;
      // host.example's endpoint never answers: the seed given with its relationship is all there is of it.
      const fetch = async (rel: FederationRelationship, anchors: readonly Buffer[] | undefined): Promise<FederatedBundleDocument> => {
        if (rel.trustDomain === 'host.example') throw new Error('connection refused');
        hostedCalls++;
        if (anchors === undefined) throw new Error('no bundle of host.example is stored');
        return { bundle: partner.bundle(1), ignored: [], unreadableTypes: 0 };
      };
      const poller = new FederatedBundlePoller([hostedRel!], ds, clock, silentLogger(), fetch);
      t.after(() => poller.stop());
      const svc = federationService(poller, ds, 'example.org', clock, silentLogger()) as unknown as Record<string, Handler>;
      poller.start();
      clock.advance(0);
      await poller.pending('partner.org');
      if (method === 'UpdateFederationRelationship') {
        await call(svc['CreateFederationRelationship']!, { relationship: hostRelationship });
        clock.advance(0);
        await poller.pending('host.example');
      }
      const status = poller.status('partner.org')!;
      assert.ok(status.lastError, 'nothing authenticates the hosted endpoint yet');
      assert.equal(hostedCalls, 1);

      await call(svc[method]!, { relationship: hostRelationship, bundle: bundleToSpiffeJson(host.bundle(1)), bundle_format: 'spiffe' });
      assert.ok(clock.now() < status.nextPollAt!, 'before the retry is due');
      clock.advance(0);
      const poll = poller.pending('partner.org');
      assert.ok(poll, 'the hosted relationship is polled at once, not at its retry');
      await poll;
      assert.equal(poller.status('partner.org')!.lastError, undefined);
      assert.equal(hostedCalls, 2);
    });
  });
}
