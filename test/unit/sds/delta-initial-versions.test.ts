import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeltaResources, DeltaClient, envoyNode } from '../../support/sds-client.js';
import { APP_A, APP_B, as, registerA, SELECTOR_A, trustDomainsForSuite } from './sds-harness.js';

// No secret of this agent has an empty version, so a name declared with one in initial_resource_versions is not held
// from here (delta-stream.ts). Were it taken as held, a name that does not resolve for the caller would go out in
// removed_resources, which Envoy reads as "ready" for a listener that never got its secret (mutation testing round
// 2: with the check dropped every other SDS test still passed).
describe('SDS DeltaSecrets: what the stream counts as held by the client (stubbed attestation)', () => {
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

  // What the stream counts as held is also what unsubscribing forgets: under a wildcard the name is still wanted, and
  // a client that dropped it must get it again (delta-stream.ts). Mutation round 2: with the name kept as held, the
  // unsubscribe went unanswered and the client went without it until its secret next changed.
  it('a name unsubscribed under the wildcard, so dropped by the client, is sent again', async () => {
    await withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: envoyNode(), subscribe: ['*'] });
      const r1 = await client.next();
      const version = decodeDeltaResources(r1).find((r) => r.name === APP_A)?.version;
      assert.ok(version, 'the wildcard delivers the caller\'s SVID');
      client.ack(r1);
      client.request({ unsubscribe: [APP_A] });
      const r2 = await client.next();
      assert.deepEqual(decodeDeltaResources(r2).map((r) => [r.name, r.version]), [[APP_A, version]]);
      client.cancel();
    });
  });
});
