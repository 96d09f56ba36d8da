import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { RateLimiter } from '../../../src/common/rate-limiter.js';
import { AgentCallBudgets } from '../../../src/server/api/agent-call-budgets.js';
import type { NodeContext } from '../../../src/server/api/node-context.js';
import { renewCall } from '../../../src/server/api/node-signing.js';
import { SigningLimits } from '../../../src/server/api/signing-limits.js';

type Handler = (call: { request: unknown; getPeer(): string }, cb: (err: ServiceError | null) => void) => void;

const AGENT = 'spiffe://example.org/meshid/agent/east/a';
const RENEW = '/meshid.agent.v1.Node/Renew';

test('a renewal the signing budget refuses gives its renewal token back: the retry it is told to make is not refused for renewing too often', async () => {
  const clock = new FakeClock();
  const budgets = new AgentCallBudgets(3_600_000, clock);
  // An agent signing budget of one CSR, already spent.
  const limiter = new SigningLimits(new RateLimiter(0.001, 1, clock), new RateLimiter(1000, 1000, clock));
  assert.equal(limiter.admit(AGENT, 1), 0);
  const ctx = {
    deps: { budgets, limiter, log: silentLogger() },
    auth: async () => ({ spiffeId: AGENT, datacenter: 'east' }),
  } as unknown as NodeContext;
  const renew = renewCall(ctx) as unknown as Handler;
  // The call gate charges each Renew before it is decoded: the agent's whole renewal burst goes on these.
  let charged = 0;
  while (budgets.charge(RENEW, AGENT) === undefined) charged++;
  assert.ok(charged > 0);
  budgets.refundRenewal(AGENT);
  assert.equal(budgets.charge(RENEW, AGENT), undefined, 'the last renewal token, charged for the call below');
  const err = await new Promise<ServiceError | null>((resolve) => renew({ request: { csr: Buffer.from('csr') }, getPeer: () => '127.0.0.1:1' }, resolve));
  assert.equal(err?.code, status.RESOURCE_EXHAUSTED);
  assert.match(err!.details, /signing rate limit reached/);
  assert.equal(budgets.charge(RENEW, AGENT), undefined, 'the refused renewal did not use up a renewal token');
});
