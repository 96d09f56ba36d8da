/**
 * ServerConnection: several calls refused at once for the clocks (the server takes the agent SVID for expired while
 * this host's clock takes it for valid) share one retry: one reopen of the Sync stream, not one per call.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { permissionDenied } from '../../../src/common/errors.js';
import * as server from '../../../src/server/api/agent-auth.js';
import { until } from '../../support/until.js';
import { HOUR, openAgentFixture } from './agent-fixture.js';
import { startConnection, stubIdentity, stubServer, type SyncCall } from './stub-node-server.js';

test('three calls refused at once for the clocks: one reopen, at the first backoff delay, and no other', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const opens: number[] = [];
  const streams: SyncCall[] = [];
  // Never answered: the agent stays out of sync, and each open shows at the stub.
  const client = await stubServer(t, fx, { Sync: (call: SyncCall) => void (opens.push(fx.clock.now()), streams.push(call)) });
  const agentId = 'spiffe://example.org/meshid/agent/x';
  const connection = startConnection(t, fx, client, stubIdentity({ current: () => ({ trustDomain: 'example.org', spiffeId: agentId }) }));
  await until('the first open', () => (opens.length === 1 ? true : undefined));

  // The server's clock two hours ahead: the SVID, valid here for another hour, is expired there.
  const refusal = permissionDenied(server.expiredSvidRefusal(agentId, fx.clock.now() + HOUR, fx.clock.now() + 2 * HOUR));
  const refusedAt = fx.clock.now();
  for (let i = 0; i < 3; i++) connection.handleRejection('reattest', refusal);
  assert.equal(connection.state, 'disconnected', 'the identity is kept');
  // At random 0.5 the backoff waits 375 ms, 750 ms, 1500 ms, 3000 ms… (equal jitter of 500 ms doubling).
  fx.clock.advance(375);
  await until('one reopen', () => (opens.length === 2 ? true : undefined));
  assert.equal(opens[1]! - refusedAt, 375);

  // No other retry comes of the other two refusals: the reopened stream stays the only one.
  for (let waited = 0; waited < 5000; waited += 250) {
    fx.clock.advance(250);
    for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 200)); // a stray open still on its way over loopback
  assert.equal(opens.length, 2, 'one retry for the three refusals');
});
