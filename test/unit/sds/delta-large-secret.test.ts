import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeltaResources, DeltaClient, envoyNode } from '../../support/sds-client.js';
import { as, registerAFederatingLarge, SELECTOR_A, startSdsHarness, trustDomainsForSuite } from './sds-harness.js';

// A DeltaDiscoveryResponse stops at DELTA_RESPONSE_BYTES (1 MiB), but one secret larger than that goes alone
// (delta-stream.ts): nothing smaller can carry it. Mutation testing round 2: with the first secret of a response
// held to the bound too, every SDS test passed and such a secret was never sent.
describe('SDS DeltaSecrets: one secret over the 1 MiB a response is cut at (stubbed attestation)', () => {
  const suite = trustDomainsForSuite();

  it('`ALL` of ~1.4 MB (two federated trust domains of ~0.7 MB of roots) is sent, alone in its response', async () => {
    const domains = ['fed0.example', 'fed1.example'];
    const h = await startSdsHarness(suite.ca, registerAFederatingLarge(suite.foreign, domains));
    try {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: envoyNode(), subscribe: ['ALL'] });
      const r1 = await client.next();
      assert.deepEqual(decodeDeltaResources(r1).map((r) => r.name), ['ALL']);
      const bytes = r1.resources?.[0]?.resource?.value?.length ?? 0;
      assert.ok(bytes > 1024 * 1024, `the secret is over 1 MiB (${bytes} bytes)`);
      client.cancel();
    } finally {
      await h.close();
    }
  });
});
