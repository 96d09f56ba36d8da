import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextAuthorityDecision, renewalTime, shouldActivateSuccessor, shouldPrepareSuccessor } from '../../../src/common/rotation.js';

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

test('leaf renewal happens at half-life shifted by jitter, clamped to ±10% and never after 90%', () => {
  const l = { notBefore: 0, notAfter: 24 * H };
  assert.equal(renewalTime(l, 0), 12 * H);
  assert.equal(renewalTime(l, 0.1), 14.4 * H);
  assert.equal(renewalTime(l, -0.1), 9.6 * H);
  assert.equal(renewalTime(l, 5), 14.4 * H, 'jitter beyond 10% is clamped');
});
