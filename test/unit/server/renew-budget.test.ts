import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { RateLimiter } from '../../../src/common/rate-limiter.js';
import { renewalTime } from '../../../src/common/rotation.js';
import { BACKDATE_MS } from '../../../src/server/ca/authority-factory.js';
import { AgentCallBudgets, renewRatePerSecond } from '../../../src/server/api/agent-call-budgets.js';
import { isMeshidError } from '../../../src/common/errors.js';

test("an agent renewing its SVID as the agent does, at any agent SVID TTL the config accepts above 10 s, never meets the server's renewal budget", () => {
  for (const ttlSeconds of [20, 30, 45, 60, 600, 3600, 86_400]) {
    const ttlMs = ttlSeconds * 1000;
    const clock = new FakeClock(Date.UTC(2026, 0, 1));
    const budget = new RateLimiter(renewRatePerSecond(ttlMs), 10, clock);
    // The earliest renewal the jitter allows, every time: the most renewals a real agent makes.
    for (let i = 0; i < 200; i++) {
      const now = clock.now();
      const svid = { notBefore: now - BACKDATE_MS, notAfter: now + ttlMs };
      clock.set(renewalTime(svid, -0.1));
      assert.equal(budget.take('spiffe://example.org/meshid/agent/east/a'), 0, `TTL ${ttlSeconds} s: renewal ${i + 1} refused`);
    }
  }
});

test('at the default agent SVID TTL (24 h), an agent renewing in a loop gets ten renewals, then one every ten seconds; other Node calls cost nothing here', () => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const budgets = new AgentCallBudgets(86_400_000, clock);
  const agent = 'spiffe://example.org/meshid/agent/east/a';
  const renew = (): unknown => budgets.charge('/meshid.agent.v1.Node/Renew', agent);
  for (let i = 0; i < 10; i++) assert.equal(renew(), undefined, `renewal ${i + 1}`);
  const refused = renew();
  assert.ok(isMeshidError(refused, 'resource_exhausted'), String(refused));
  assert.equal(refused.retryAfterMs, 10_000);
  assert.match(refused.message, /^agent \S+ renews its SVID too often; retry in 10 s$/);
  for (let i = 0; i < 100; i++) assert.equal(budgets.charge('/meshid.agent.v1.Node/SignX509Svids', agent), undefined);
  clock.advance(10_000);
  assert.equal(renew(), undefined);
  assert.ok(isMeshidError(renew(), 'resource_exhausted'));
});
