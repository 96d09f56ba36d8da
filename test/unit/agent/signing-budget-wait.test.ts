/**
 * SigningBudgetWait (agent/cache/signing-budget-wait.ts), the wait the server's signing budget asked of this agent,
 * shared by X.509 and JWT signing: held until the latest retry time any refusal named, each refusal counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { SigningBudgetWait } from '../../../src/agent/cache/signing-budget-wait.js';

test('a refusal naming an earlier retry time than one held (a call sent before, answered after) does not shorten the wait; each refusal counts', () => {
  const clock = new FakeClock();
  const wait = new SigningBudgetWait(clock);
  const t0 = clock.now();
  assert.equal(wait.heldUntil(), undefined);
  wait.holdUntil(t0 + 30_000);
  wait.holdUntil(t0 + 10_000);
  assert.equal(wait.heldUntil(), t0 + 30_000);
  assert.equal(wait.refusals, 2);
  clock.advance(29_999);
  assert.equal(wait.heldUntil(), t0 + 30_000);
  clock.advance(1);
  assert.equal(wait.heldUntil(), undefined, 'signing may go at the retry time');
});
