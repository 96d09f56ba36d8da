/**
 * SDS with the agent's allow_unauthenticated_verifiers: Envoys that only verify peers, with no entry of their own, get
 * the own trust domain's validation contexts and nothing else.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import type { FakeSdsCache } from '../../support/fake-sds-cache.js';
import { decodeDeltaResources, DeltaClient, envoyNode, fetchSecrets, secretsByName, SotwClient, spiffeTrustDomains, type DiscoveryResponse } from '../../support/sds-client.js';
import { APP_A, as, FOREIGN_TD, SELECTOR_A, TD, trustDomainsForSuite, UNREGISTERED } from './sds-harness.js';

const OWN = `spiffe://${TD}`;
const VERIFIERS_ALLOWED = { allowUnauthenticatedVerifiers: true };
const FOREIGN = `spiffe://${FOREIGN_TD}`;

function names(response: DiscoveryResponse): string[] {
  return [...secretsByName(response).keys()].sort();
}

describe('SDS allowUnauthenticatedVerifiers (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();
  const register = (c: FakeSdsCache): void => {
    c.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
    c.setFederatedBundle(suite.foreign.bundle());
  };

  it('a caller no entry matches gets ROOTCA (own roots only) and its wildcard holds only the own trust domain', async () => {
    await suite.withHarness(register, async (h) => {
      const client = new SotwClient(h.client, as(UNREGISTERED));
      client.subscribe(['ROOTCA', 'default', FOREIGN]);
      const r1 = await client.next();
      assert.deepEqual(names(r1), ['ROOTCA'], 'no SVID and no federated bundle for a caller without entries');
      assert.deepEqual(spiffeTrustDomains(secretsByName(r1).get('ROOTCA')!).map((d) => d.name), [TD]);
      client.cancel();

      const wildcard = new SotwClient(h.client, as(UNREGISTERED));
      wildcard.subscribe([]);
      assert.deepEqual(names(await wildcard.next()), ['ALL', 'ROOTCA', OWN].sort());
      wildcard.cancel();

      const fetched = await fetchSecrets(h.client, { resource_names: ['ROOTCA'] }, as(UNREGISTERED));
      assert.deepEqual(names(fetched), ['ROOTCA']);
      const denied = await fetchSecrets(h.client, { resource_names: ['default'] }, as(UNREGISTERED)).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      assert.equal(denied?.code, status.NOT_FOUND, 'an SVID name still does not resolve for it');
    }, VERIFIERS_ALLOWED);
  });

  it('DeltaSecrets serves it the same: the own validation context, and no SVID or federated bundle', async () => {
    await suite.withHarness(register, async (h) => {
      const client = new DeltaClient(h.client, as(UNREGISTERED));
      client.request({ node: envoyNode(), subscribe: ['default', 'ROOTCA', FOREIGN] });
      const r1 = await client.next();
      assert.deepEqual(decodeDeltaResources(r1).map((r) => r.name), ['ROOTCA']);
      assert.deepEqual(r1.removed_resources ?? [], [], 'never held, so not removed: they wait, as any name that does not resolve');
      client.cancel();
    }, VERIFIERS_ALLOWED);
  });

  it('a caller that loses its last entry still has its stream ended: Envoy must not keep presenting a revoked SVID', async () => {
    await suite.withHarness(register, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA', FOREIGN]);
      const r1 = await client.next();
      assert.deepEqual(names(r1), [FOREIGN, 'ROOTCA', 'default'].sort());
      client.ack(r1, ['default', 'ROOTCA', FOREIGN]);
      h.cache.removeEntry(APP_A);
      assert.equal((await client.status).code, status.PERMISSION_DENIED);
    }, VERIFIERS_ALLOWED);
  });

  it('without the option, the same caller is PERMISSION_DENIED (default deny)', async () => {
    await suite.withHarness(register, async (h) => {
      const client = new SotwClient(h.client, as(UNREGISTERED));
      client.subscribe(['ROOTCA']);
      assert.equal((await client.status).code, status.PERMISSION_DENIED);
    });
  });
});
