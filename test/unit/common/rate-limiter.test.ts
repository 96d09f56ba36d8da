import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { RateLimiter } from '../../../src/common/rate-limiter.js';
import { SigningLimits } from '../../../src/server/api/signing-limits.js';

test('a token bucket admits its burst, then refills at its rate, and says how long to wait', () => {
  const clock = new FakeClock(0);
  const l = new RateLimiter(10, 20, clock);
  assert.equal(l.take('a', 20), 0);
  assert.equal(l.take('a', 1), 100, 'one token arrives every 100 ms');
  clock.advance(500);
  assert.equal(l.take('a', 5), 0);
  assert.equal(l.take('b', 20), 0, 'each key has its own bucket');
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
