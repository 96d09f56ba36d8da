import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeltaResources, DeltaClient, envoyNode } from '../../support/sds-client.js';
import { APP_B, as, registerA, SELECTOR_A, trustDomainsForSuite } from './sds-harness.js';

// No secret of this agent has an empty version, so a name declared with one in initial_resource_versions is not held
// from here (delta-stream.ts). Were it taken as held, a name that does not resolve for the caller would go out in
// removed_resources, which Envoy reads as "ready" for a listener that never got its secret (mutation testing round
// 2: with the check dropped every other SDS test still passed).
describe('SDS DeltaSecrets: initial_resource_versions with an empty version (stubbed attestation)', () => {
  const { withHarness } = trustDomainsForSuite();

  it('a name declared with an empty version that does not resolve is not removed, only left unanswered', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      // APP_B is another workload's: it never resolves for this caller.
      client.request({ node: envoyNode(), subscribe: [APP_B, 'ROOTCA'], initialVersions: { [APP_B]: '' } });
      const r1 = await client.next();
      assert.deepEqual(decodeDeltaResources(r1).map((r) => r.name), ['ROOTCA']);
      assert.deepEqual(r1.removed_resources ?? [], []);
      client.cancel();
    });
  });
});
