/**
 * The failed items of one answer come back together at the soonest retry any of them needs (SvidIssuer.itemsFailed):
 * an entry that has failed often does not hold back one that failed once beside it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SvidIssuer, type SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import { silentLogger } from '../../../src/common/log.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

/** Lets queued microtasks and the signing promises run. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

test('an entry failing for the sixth time and one failing for the second, refused in one answer, are both retried at the second one\'s backoff', async () => {
  const cache = fx.cache();
  const calls: string[][] = [];
  // The CA refuses every item (UNAVAILABLE, item by item).
  const sign = async (items: ReadonlyArray<{ entryId: string; csr: Buffer }>): Promise<SignedItem[]> => {
    calls.push(items.map((i) => i.entryId));
    return items.map((i) => ({ entryId: i.entryId, code: 14, message: 'stubbed: the CA refuses every item', chain: [] }));
  };
  // Backoff 1 s doubling; at random 0.5 each wait is three quarters of its step.
  const issuer = new SvidIssuer({ cache, sign, clock: fx.clock, log: silentLogger(), random: () => 0.5 });
  try {
    const often = entry('item-round/often', ['unix:uid:7']);
    issuer.request(cache.apply({ upserts: [often] }).needSvid);
    await settle();
    while (calls.length < 5) {
      fx.clock.advance(250);
      await settle();
    }
    const once = entry('item-round/once', ['unix:uid:8']);
    issuer.request(cache.apply({ upserts: [once] }).needSvid);
    await settle();
    assert.deepEqual(calls.at(-1), [once.id], 'the new entry failed alone, once');
    // A reconnect brings both back now, in one call: refused again, the sixth and the second failure.
    issuer.kick();
    await settle();
    assert.deepEqual(new Set(calls.at(-1)), new Set([often.id, once.id]));
    const joint = fx.clock.now();
    const n = calls.length;
    while (calls.length === n && fx.clock.now() < joint + 60_000) {
      fx.clock.advance(250);
      await settle();
    }
    assert.ok(fx.clock.now() - joint <= 2000, `retried ${fx.clock.now() - joint} ms later: the second failure's backoff (1.5 s), not the sixth's (24 s)`);
    assert.deepEqual(new Set(calls.at(-1)), new Set([often.id, once.id]), 'both, in one call');
  } finally {
    issuer.stop();
  }
});
