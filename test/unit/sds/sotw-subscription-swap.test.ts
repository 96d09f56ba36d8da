import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { secretsByName, SotwClient, type DiscoveryResponse } from '../../support/sds-client.js';
import { APP_A, as, registerA, SELECTOR_A, trustDomainsForSuite } from './sds-harness.js';

function names(response: DiscoveryResponse): string[] {
  return [...secretsByName(response).keys()].sort();
}

// An ACK repeats the subscription it answers and is let through without a look at the state (sotw-stream.ts): a
// request naming as many names, but others, must not pass for one. Mutation testing round 2: with the list compared
// by length only, the swaps below went unanswered and the client kept the secrets it had dropped.
describe('SDS StreamSecrets: a subscription changed without changing its size (stubbed attestation)', () => {
  const { withHarness } = trustDomainsForSuite();

  it('one name swapped for another is answered with the new one only', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      assert.deepEqual(names(r1), ['default']);
      client.ack(r1, ['ROOTCA']);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ROOTCA']);
      client.cancel();
    });
  });

  it('the same names in another order are an ACK: nothing is sent', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default', 'ROOTCA']);
      const r1 = await client.next();
      client.ack(r1, ['default', 'ROOTCA']);
      // Reordered: the subscription is the same set, so no response; the swap after it is the barrier that shows it.
      client.ack(r1, ['ROOTCA', 'default']);
      client.ack(r1, ['ROOTCA', 'ALL']);
      const r2 = await client.next();
      assert.deepEqual(names(r2), ['ALL', 'ROOTCA']);
      assert.equal(h.service.stats().responses, 2);
      client.cancel();
    });
  });

  // The same names plus `*` is a change of the wildcard alone: without it counted, nothing went out until some
  // unrelated secret changed.
  it('`*` added beside the names already held is answered at once with every name that resolves', async () => {
    await withHarness(registerA, async (h) => {
      const client = new SotwClient(h.client, as(SELECTOR_A));
      client.subscribe(['default']);
      const r1 = await client.next();
      assert.deepEqual(names(r1), ['default']);
      client.ack(r1, ['default', '*']);
      const r2 = await client.next();
      assert.ok(names(r2).includes(APP_A), `the wildcard's names are sent: got ${names(r2).join(', ')}`);
      assert.ok(names(r2).includes('default'));
      client.cancel();
    });
  });
});
