/**
 * AttestAttempts on its own (agent-call-gate.test.ts has a source spending its attempts against a real server): the
 * burst a source address may spend, the rate it earns attempts back, and the refusal the agent's backoff reads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { AttestAttempts } from '../../../src/server/api/attest-attempts.js';

test('a source address spends 100 attempts at once, then earns one back every 200 ms; each refusal is UNAVAILABLE with the wait as retry pushback', () => {
  const clock = new FakeClock();
  const attempts = new AttestAttempts(clock);
  // Another port of the same address is the same source.
  for (let i = 0; i < 100; i++) assert.equal(attempts.charge(`192.0.2.7:${40000 + i}`), undefined, `attempt ${i + 1} of the burst`);
  const refused = attempts.charge('192.0.2.7:41000');
  assert.ok(refused !== undefined, 'the 101st attempt at once is refused');
  assert.equal(refused.code, 'unavailable', 'the agent retries its first attestation with backoff on UNAVAILABLE');
  assert.equal(refused.retryAfterMs, 200, 'retry no sooner than the next attempt is due');
  assert.equal(refused.message, 'too many attestation attempts from 192.0.2.7; retry in 1 s');
  assert.equal(attempts.charge('192.0.2.8:40000'), undefined, 'another source keeps its own budget');

  clock.advance(199);
  assert.equal(attempts.charge('192.0.2.7:41001')?.retryAfterMs, 1);
  clock.advance(1);
  assert.equal(attempts.charge('192.0.2.7:41002'), undefined, 'one attempt earned back after 200 ms');
  assert.equal(attempts.charge('192.0.2.7:41003')?.code, 'unavailable', 'and only one');
  clock.advance(20_000);
  for (let i = 0; i < 100; i++) assert.equal(attempts.charge(`192.0.2.7:${42000 + i}`), undefined, 'a quiet source has its whole burst again');
  assert.notEqual(attempts.charge('192.0.2.7:43000'), undefined, 'never more than the burst');
});
