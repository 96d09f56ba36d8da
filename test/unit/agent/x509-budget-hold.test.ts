import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { SigningBudgetWait } from '../../../src/agent/cache/signing-budget-wait.js';
import { X509BudgetHold } from '../../../src/agent/cache/x509-budget-hold.js';

test('a later budget refusal asking for less does not shorten the X.509 queue\'s own backoff', () => {
  const clock = new FakeClock();
  const hold = new X509BudgetHold(new SigningBudgetWait(clock), clock);
  const now = clock.now();
  // A batch sent before the hold answers after it: the server's wait is short, the queue's backoff shorter still.
  hold.refused(now, 1_000, 8_000);
  hold.refused(now + 100, 1_000, 2_000);
  assert.equal(hold.until(), now + 8_000);
});

test('the flush armed first stays armed: waking again later does not push it back', () => {
  const clock = new FakeClock();
  const hold = new X509BudgetHold(new SigningBudgetWait(clock), clock);
  let flushes = 0;
  hold.wakeAfter(1_000, () => flushes++);
  clock.advance(500);
  hold.wakeAfter(1_000, () => flushes++);
  clock.advance(500);
  assert.equal(flushes, 1, 'flushed when first asked');
  assert.equal(clock.pendingTimers(), 0, 'one timer, not two');
  hold.wakeAfter(1_000, () => flushes++);
  hold.stop();
  clock.advance(1_000);
  assert.equal(flushes, 1, 'none after stop()');
});
