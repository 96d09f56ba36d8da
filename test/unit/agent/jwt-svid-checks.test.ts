import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jwtSvidFailure } from '../../../src/agent/cache/jwt-svid-checks.js';
import { MeshidError, resourceExhausted } from '../../../src/common/errors.js';
import { entry } from './agent-fixture.js';

test('a budget refusal not waited out reaches the workload as UNAVAILABLE with the server\'s wait as its pushback, never "retry in 0 s"', () => {
  const e = entry('budget-told', ['unix:uid:1']);
  const told = jwtSvidFailure(e, new MeshidError('resource_exhausted', 'signing rate limit reached', { retryAfterMs: 200 }));
  assert.equal(told.code, 'unavailable');
  assert.equal(told.retryAfterMs, 200);
  assert.match(told.message, /retry in 1 s$/);
  assert.match(jwtSvidFailure(e, new MeshidError('resource_exhausted', 'signing rate limit reached', { retryAfterMs: 0 })).message, /retry in 1 s$/);
  const longer = jwtSvidFailure(e, resourceExhausted('signing rate limit reached; retry in 4 s'));
  assert.equal(longer.retryAfterMs, 4000);
  assert.match(longer.message, /retry in 4 s$/);
});
