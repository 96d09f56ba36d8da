import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { PRUNE_AT_BUCKETS, RateLimiter } from '../../../src/common/rate-limiter.js';
import { csrCost, SigningLimits } from '../../../src/server/api/signing-limits.js';

import { isMeshidError } from '../../../src/common/errors.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

test('a token bucket admits its burst, then refills at its rate, and says how long to wait', () => {
  const clock = new FakeClock(0);
  const l = new RateLimiter(10, 20, clock);
  assert.equal(l.take('a', 20), 0);
  assert.equal(l.take('a', 1), 100, 'one token arrives every 100 ms');
  clock.advance(500);
  assert.equal(l.take('a', 5), 0);
  assert.equal(l.take('b', 20), 0, 'each key has its own bucket');
});

test('a bucket holds at most its burst: a key idle for long does not save up beyond it', () => {
  const clock = new FakeClock(0);
  const l = new RateLimiter(10, 20, clock);
  assert.equal(l.take('a', 20), 0);
  clock.advance(60_000);
  assert.equal(l.take('a', 20), 0, 'a minute idle refills the burst');
  assert.equal(l.wait('a', 1), 100, 'and no more: the 600 tokens a minute brings are not kept');
});

test('signing limits: one agent cannot use up the global budget, and a refusal consumes nothing', () => {
  const clock = new FakeClock(0);
  const limits = new SigningLimits(new RateLimiter(100, 100, clock), new RateLimiter(1000, 150, clock));
  assert.equal(limits.admit('agent-a', 100), 0);
  assert.ok(limits.admit('agent-a', 10) > 0, 'agent-a is over its own budget');
  // agent-a's refusal gave its global tokens back: 50 remain for others.
  assert.equal(limits.admit('agent-b', 50), 0);
  assert.ok(limits.admit('agent-c', 1) > 0, 'the global budget is spent');
  clock.advance(100);
  assert.equal(limits.admit('agent-c', 50), 0, 'the global budget refills');
});

test('a bucket says how long until a cost is there without taking it', () => {
  const clock = new FakeClock(0);
  const l = new RateLimiter(10, 20, clock);
  assert.equal(l.take('a', 15), 0);
  assert.equal(l.wait('a', 10), 500, 'five tokens short');
  assert.equal(l.wait('a', 10), 500, 'waiting took nothing');
  clock.advance(500);
  assert.equal(l.take('a', 10), 0);
});

test('signing limits: keys are charged their cost beyond the tokens admit took; a refusal gives all back and says when the whole fits', () => {
  const clock = new FakeClock(0);
  const limits = new SigningLimits(new RateLimiter(1, 13, clock), new RateLimiter(1, 1000, clock));
  const p256 = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' }).publicKey;
  const p384 = jobFreeKeyPair('ec', { namedCurve: 'secp384r1' }).publicKey;
  const rsa = jobFreeKeyPair('rsa', { modulusLength: 2048 }).publicKey;
  assert.deepEqual([csrCost(p256), csrCost(p384), csrCost(rsa)], [1, 5, 1]);
  assert.equal(limits.admit('a', 2), 0);
  assert.equal(limits.admitKeys('a', [p256, rsa], 2), 0, 'nothing beyond one token each');
  assert.equal(limits.admit('a', 2), 0);
  assert.equal(limits.admitKeys('a', [p384, p384], 2), 0, '12 of 13 tokens taken');
  assert.equal(limits.admit('a', 1), 0);
  assert.equal(limits.admitKeys('a', [p384], 1), 4000, 'the whole 5 are there once 4 more have come, 1 a second');
  assert.equal(limits.admit('a', 1), 0, 'the refusal gave back the token admit took');
  assert.ok(limits.admit('a', 1) > 0);
  clock.advance(5000);
  assert.equal(limits.admit('a', 1), 0);
  assert.equal(limits.admitKeys('a', [p384], 1), 0, 'after the wait it said, the same request is admitted');

  // More than a full bucket can never be admitted: refused outright, and everything given back.
  clock.advance(60_000);
  assert.throws(() => limits.admit('a', 14), (e: unknown) => isMeshidError(e, 'invalid_argument') && /costs 14 signing tokens, more than an agent's budget holds \(agent_sign_burst 13/.test(e.message));
  assert.equal(limits.admit('a', 3), 0);
  assert.throws(() => limits.admitKeys('a', [p384, p384, p384], 3), /costs 15 signing tokens/);
  assert.equal(limits.admit('a', 13), 0, 'the 3 taken before the refusal came back');
});

test('signing limits: keys whose whole cost is one more than an agent\'s bucket holds are refused outright, not told to wait for a fill that never comes', () => {
  const clock = new FakeClock(0);
  const limits = new SigningLimits(new RateLimiter(1, 9, clock), new RateLimiter(1, 1000, clock));
  const p384 = jobFreeKeyPair('ec', { namedCurve: 'secp384r1' }).publicKey;
  assert.equal(limits.admit('a', 2), 0);
  assert.throws(() => limits.admitKeys('a', [p384, p384], 2), (e: unknown) => isMeshidError(e, 'invalid_argument') && /costs 10 signing tokens/.test(e.message));
  assert.equal(limits.admit('a', 9), 0, 'the 2 taken before the refusal came back');
});

/** The limiter's map, counting full scans of it (a prune walks it; a take looks up one key). */
function countScans(l: RateLimiter): { scans: number } {
  const counter = { scans: 0 };
  const buckets = (l as unknown as { buckets: Map<string, unknown> }).buckets;
  const iterate = buckets[Symbol.iterator].bind(buckets);
  buckets[Symbol.iterator] = () => {
    counter.scans++;
    return iterate();
  };
  return counter;
}

test('over PRUNE_AT_BUCKETS buckets all in use, takes do not scan the map each time: a scan of n comes after n/2 new keys', () => {
  const clock = new FakeClock(0);
  const l = new RateLimiter(1, 10, clock);
  for (let i = 0; i <= PRUNE_AT_BUCKETS; i++) l.take(`live-${i}`);
  const counter = countScans(l);
  for (let i = 0; i < 1000; i++) {
    clock.advance(1);
    l.take(`new-${i}`);
    l.take('live-0');
  }
  assert.ok(counter.scans <= 1, `${counter.scans} scans of ${PRUNE_AT_BUCKETS} buckets for 2,000 takes`);
  assert.equal(l.size, PRUNE_AT_BUCKETS + 1001, 'no bucket in use is forgotten');
  assert.ok(l.take('live-0', 10) > 0, 'a kept bucket still holds what was taken from it');
});

test('with many keys coming and going, idle buckets are forgotten and the count stays bounded', () => {
  const clock = new FakeClock(0);
  // Full again 2 s after a take: a key unused for 2 s is idle.
  const l = new RateLimiter(1, 2, clock);
  let most = 0;
  for (let i = 0; i < 5 * PRUNE_AT_BUCKETS; i++) {
    if (i % 10_000 === 0) clock.advance(1000);
    assert.equal(l.take(`k-${i}`), 0);
    most = Math.max(most, l.size);
  }
  assert.ok(most <= PRUNE_AT_BUCKETS + 1, `${most} buckets held at once`);
  // Everything idle now: the next prune, due within PRUNE_AT_BUCKETS + 1 new keys, keeps only the keys still in use.
  clock.advance(10_000);
  for (let i = 0; i <= PRUNE_AT_BUCKETS; i++) l.take(`late-${i}`);
  assert.equal(l.size, PRUNE_AT_BUCKETS + 1, 'only the late keys, all in use, are held: every idle one is gone');
  assert.ok(l.take('late-0', 2) > 0, 'the bucket just taken from was kept, with its take');
});
