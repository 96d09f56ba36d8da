import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { SubscriptionBudget } from '../../../src/agent/sds/subscription-budget.js';
import { DeltaClient, envoyNode, SotwClient } from '../../support/sds-client.js';
import { APP_A, as, eventually, registerA, SELECTOR_A, trustDomainsForSuite } from './sds-harness.js';

const NODE = envoyNode();

/** The status a stream ends with; a stream still open after 10 s fails the test rather than hanging it. */
function ended(stream: SotwClient | DeltaClient): Promise<number> {
  return Promise.race([
    stream.status.then((s) => s.code),
    new Promise<number>((_, reject) => setTimeout(() => reject(new Error('the stream was not ended')), 10_000).unref()),
  ]);
}
/** Names of 100 characters that resolve to nothing: what a stream holds for its life while it waits for them. */
const names = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `spiffe://example.org/${prefix}-${String(i).padStart(4, '0')}-${'x'.repeat(100 - 27 - prefix.length)}`);

describe('SubscriptionBudget', () => {
  it('counts each stream once, resized in place, and forgets a uid whose streams are all released', () => {
    const budget = new SubscriptionBudget(1000);
    const a = budget.forStream(7);
    const b = budget.forStream(7);
    a.resize(600);
    a.resize(300);
    b.resize(700);
    assert.equal(budget.heldBy(7), 1000);
    assert.throws(() => b.resize(701), /at most 1000/);
    assert.equal(budget.heldBy(7), 1000, 'a refused resize changes nothing');
    // Another uid has its own budget.
    budget.forStream(8).resize(1000);
    a.release();
    b.release();
    assert.equal(budget.heldBy(7), 0);
    assert.equal(budget.uids, 1);
  });

  it('lets a stream shrink even while its uid is over the limit', () => {
    const budget = new SubscriptionBudget(100);
    const a = budget.forStream(1);
    a.resize(100);
    a.resize(40);
    assert.equal(budget.heldBy(1), 40);
  });
});

describe('SDS streams within a uid\'s budget of subscribed names', () => {
  const { withHarness } = trustDomainsForSuite();
  // 10 streams of 10 names each fill the budget of this harness.
  const deps = { nameCharsPerUid: 10 * 10 * 100 };

  it('StreamSecrets: a stream that would take its uid past the budget ends RESOURCE_EXHAUSTED; a closed one gives its share back', async () => {
    await withHarness(registerA, async (h) => {
      const held = Array.from({ length: 10 }, (_, i) => {
        const s = new SotwClient(h.client, as(SELECTOR_A));
        s.subscribe([...names(`s${i}`, 9), APP_A]);
        return s;
      });
      for (const s of held) await s.next();
      const over = new SotwClient(h.client, as(SELECTOR_A));
      over.subscribe(names('over', 6));
      assert.equal(await ended(over), status.RESOURCE_EXHAUSTED);
      // The streams within it go on.
      held[0]!.ack(held[0]!.received[0]!, [APP_A]);
      held[0]!.cancel();
      await eventually(() => h.service.stats().sotwStreams === 9, 'the cancelled stream to close');
      const again = new SotwClient(h.client, as(SELECTOR_A));
      again.subscribe([...names('again', 9), APP_A]);
      assert.equal((await again.next()).resources?.length, 1);
      for (const s of [...held, again]) s.cancel();
    }, undefined, deps);
  });

  it('DeltaSecrets: churning subscriptions is counted as what the stream holds now, not what it ever held', async () => {
    await withHarness(registerA, async (h) => {
      const churn = new DeltaClient(h.client, as(SELECTOR_A));
      churn.request({ node: NODE, subscribe: [APP_A, ...names('c0', 50)] });
      await churn.next();
      for (let round = 1; round <= 20; round++) churn.request({ unsubscribe: names(`c${round - 1}`, 50), subscribe: names(`c${round}`, 50) });
      // Answered only once the twenty before it were handled: 100,000 characters went through a budget of 10,000,
      // each round replacing the last.
      churn.request({ subscribe: ['ROOTCA'] });
      await churn.next();
      const other = new DeltaClient(h.client, as(SELECTOR_A));
      other.request({ node: NODE, subscribe: [APP_A, ...names('o', 40)] });
      await other.next();
      const over = new DeltaClient(h.client, as(SELECTOR_A));
      over.request({ node: NODE, subscribe: names('over', 20) });
      assert.equal(await ended(over), status.RESOURCE_EXHAUSTED);
      // A stream growing past it is ended too.
      other.request({ subscribe: names('more', 20) });
      assert.equal(await ended(other), status.RESOURCE_EXHAUSTED);
      churn.cancel();
    }, undefined, deps);
  });
});
