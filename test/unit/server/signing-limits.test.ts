import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { FakeClock } from '../../../src/common/clock.js';
import { RateLimiter } from '../../../src/common/rate-limiter.js';
import { SigningLimits } from '../../../src/server/api/signing-limits.js';

test("CSRs an agent's own budget refuses take nothing from the whole server's: one agent over its budget cannot spend the others'", () => {
  const clock = new FakeClock();
  // One token a second each; an agent holds 2, the server 3.
  const limits = new SigningLimits(new RateLimiter(1, 2, clock), new RateLimiter(1, 3, clock));
  assert.equal(limits.admit('a', 1), 0);
  assert.equal(limits.admit('a', 1), 0);
  for (let i = 0; i < 5; i++) assert.ok(limits.admit('a', 1) > 0, 'agent a is over its budget');
  assert.equal(limits.admit('b', 1), 0, "the server's last token is still there for agent b");
});

test("a P-384 CSR the whole server's budget refuses waits for that budget, though its agent's has room (a wait of 0 would read as admitted)", () => {
  const clock = new FakeClock();
  const limits = new SigningLimits(new RateLimiter(1, 10, clock), new RateLimiter(1, 6, clock));
  assert.equal(limits.admit('b', 4), 0);
  // Agent a's request: one token per CSR first, then what its key costs beyond that (a P-384 CSR costs 5).
  assert.equal(limits.admit('a', 1), 0);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
  // The server holds 1 token; the request gives its 1 back, and waits for all 5 of its cost: 3 s at 1 a second.
  const wait = limits.admitKeys('a', [p384], 1);
  assert.equal(wait, 3_000);
  clock.advance(wait);
  assert.equal(limits.admit('a', 5), 0, 'retried after that wait, the whole request is admitted in one go');
});
