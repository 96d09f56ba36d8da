/**
 * ServerConnection's watch on the agent SVID's notAfter under a timer that fires early, as the wall clock's does when
 * the host clock is stepped back (it also fires once the monotonic time has passed): an SVID still valid by the clock
 * is not given up; the watch waits for the rest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../../src/common/clock.js';
import { until } from '../../support/until.js';
import { HOUR, openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubIdentity, stubServer } from './stub-node-server.js';

test('the SVID watch firing before notAfter (a clock stepped back) waits again instead of giving the identity up', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  // Never answered: the agent is not in sync, the case in which the watch acts on this host's clock.
  const { streams, Sync } = recordedSync(() => false);
  const client = await stubServer(t, fx, { Sync });
  const cache = fx.cache();
  // Timers of more than 20 minutes fire 10 minutes early.
  const clock: Clock = { now: () => fx.clock.now(), setTimer: (fn, ms) => fx.clock.setTimer(fn, ms > 20 * 60_000 ? ms - 10 * 60_000 : ms) };
  const notAfter = fx.clock.now() + HOUR;
  let stopped = 0;
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' }),
    notAfter: () => notAfter,
    expired: (now) => now >= notAfter,
    stop: () => void stopped++,
  });
  const connection = startConnection(t, fx, client, identity, { cache, clock, issuer: { sign: () => new Promise(() => undefined) } });
  await until('the stream opened', () => (streams.length === 1 ? true : undefined));

  fx.clock.advance(55 * 60_000);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(connection.state, 'connecting', 'still valid: nothing given up');
  assert.equal(stopped, 0);

  // At notAfter itself (the re-armed watch, 10 minutes, fires on time) it is expired, and given up.
  fx.clock.advance(5 * 60_000);
  await until('given up at notAfter', () => (connection.state === 'reattest-required' ? true : undefined));
});
