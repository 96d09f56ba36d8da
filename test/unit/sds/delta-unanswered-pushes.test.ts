/**
 * A DeltaSecrets client that stops answering: the stream keeps the nonces of its last UNANSWERED_PUSHES (16) pushes
 * beyond its largest split (one part here), so an answer that comes late is still read as the ACK or NACK it is; only
 * older ones are let go, and their answers are stale (delta-stream.test.ts has the same with a split).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeltaClient, envoyNode, type DeltaDiscoveryResponse } from '../../support/sds-client.js';
import { APP_A, as, eventually, registerA, SELECTOR_A, trustDomainsForSuite } from './sds-harness.js';

describe('DeltaSecrets pushes a client has not answered', () => {
  const suite = trustDomainsForSuite();

  it('the last 17 keep their nonces: an answer to the 17th latest is an ACK, to the 18th latest stale', async () => {
    await suite.withHarness(registerA, async (h) => {
      const client = new DeltaClient(h.client, as(SELECTOR_A));
      client.request({ node: envoyNode(), subscribe: ['default'] });
      const pushes: DeltaDiscoveryResponse[] = [await client.next()];
      for (let i = 0; i < 17; i++) {
        h.cache.rotate(APP_A);
        pushes.push(await client.next());
      }
      client.ack(pushes[1]!);
      client.ack(pushes[0]!);
      const stats = (): { acks: number; stale: number } => ({ acks: h.service.stats().acks, stale: h.service.stats().staleRequests });
      await eventually(() => stats().acks + stats().stale === 2, 'both answers');
      assert.deepEqual(stats(), { acks: 1, stale: 1 });
      client.cancel();
    });
  });
});
