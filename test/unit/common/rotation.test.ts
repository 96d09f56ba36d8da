import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heldLifetime, latestRenewalTime, nextAuthorityDecision, renewalTime, shouldActivateSuccessor, shouldPrepareSuccessor } from '../../../src/common/rotation.js';

const H = 3_600_000;
const D = 24 * H;

test('an authority prepares its successor at half-life, not before', () => {
  const l = { notBefore: 0, notAfter: 7 * D };
  assert.equal(shouldPrepareSuccessor(3.5 * D - 1, l), false);
  assert.equal(shouldPrepareSuccessor(3.5 * D, l), true);
});

test('the successor activates once the active one cannot cover a full child lifetime', () => {
  const l = { notBefore: 0, notAfter: 7 * D };
  assert.equal(shouldActivateSuccessor(6 * D, l, D), false);
  assert.equal(shouldActivateSuccessor(6 * D + 1, l, D), true);
});

test('the next decision is the earlier of half-life (if nothing is prepared) and the activation point', () => {
  const l = { notBefore: 0, notAfter: 7 * D };
  assert.equal(nextAuthorityDecision(0, l, D, false), 3.5 * D);
  assert.equal(nextAuthorityDecision(0, l, D, true), 6 * D + 1);
  assert.equal(nextAuthorityDecision(4 * D, l, D, false), 6 * D + 1);
});

test('leaf renewal happens at half-life shifted by jitter, clamped to ±10%; the latest renewal point is 90% of the life', () => {
  const l = { notBefore: 0, notAfter: 24 * H };
  assert.equal(renewalTime(l, 0), 12 * H);
  assert.equal(renewalTime(l, 0.1), 14.4 * H);
  assert.equal(renewalTime(l, -0.1), 9.6 * H);
  assert.equal(renewalTime(l, 5), 14.4 * H, 'jitter beyond 10% is clamped');
  // The clamp keeps renewalTime at or before 60 %, so no input of it reaches the 90 % point: asked for directly. The
  // server holds its SVID on a tainted root until then (server-svid.ts), leaving the last tenth for retries.
  assert.equal(latestRenewalTime(l), 21.6 * H);
  assert.equal(latestRenewalTime({ notBefore: 10 * H, notAfter: 20 * H }), 19 * H);
});

test('a leaf is held from when it was asked for: a backdated notBefore does not count, a notBefore ahead of the request does', () => {
  const S = 1000;
  // A 5 s SVID backdated 10 s, asked for at 100 s: renewed 2.5 s after, not 2.5 s before it was asked for.
  assert.deepEqual(heldLifetime({ notBefore: 90 * S, notAfter: 105 * S }, 100 * S), { notBefore: 100 * S, notAfter: 105 * S });
  assert.equal(renewalTime(heldLifetime({ notBefore: 90 * S, notAfter: 105 * S }, 100 * S), 0), 102.5 * S);
  // The signer's clock ahead of the holder's: the leaf is of no use before its notBefore.
  assert.deepEqual(heldLifetime({ notBefore: 130 * S, notAfter: 150 * S }, 100 * S), { notBefore: 130 * S, notAfter: 150 * S });
  // Asked for after it expired (cannot happen for a leaf just signed, but stays a lifetime): empty, not negative.
  assert.deepEqual(heldLifetime({ notBefore: 90 * S, notAfter: 105 * S }, 200 * S), { notBefore: 105 * S, notAfter: 105 * S });
});

test('at the instant of a decision the next one is the one after it, not now again (a timer armed for now would fire for ever)', () => {
  const l = { notBefore: 0, notAfter: 7 * D };
  // At half-life, not yet prepared: the next decision is the activation point, a day before the end.
  assert.equal(nextAuthorityDecision(3.5 * D, l, D, false), 6 * D + 1);
  // Past every decision: now.
  assert.equal(nextAuthorityDecision(6 * D + 1, l, D, true), 6 * D + 1);
});
