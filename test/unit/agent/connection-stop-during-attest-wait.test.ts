/**
 * stop() while the first attestation waits for its next try (the server unreachable). The wait's timer was cancelled
 * but the attestation's promise was left pending for good, with nothing to settle it; stop() now ends the wait, and
 * settles once the attestation has returned, on the fake clock, with no time passing.
 *
 * A ServerConnection against a stub server that is never asked (no Sync: the agent has no SVID); the agent identity
 * is a stand-in whose Attest fails as an unreachable server's does, counted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unavailable } from '../../../src/common/errors.js';
import { until } from '../../support/until.js';
import { openAgentFixture } from './agent-fixture.js';
import { startConnection, stubServer, stubIdentity } from './stub-node-server.js';

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('stop() during the wait of an attestation for its next try (stubbed Attest: server unreachable) ends that attestation at once, with no time passing', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const client = await stubServer(t, fx, {});
  let attests = 0;
  // Only what the connection asks of the agent identity: no SVID yet, and an Attest the server never answers.
  const identity = stubIdentity({
    current: () => undefined,
    expired: () => true,
    canReattest: () => true,
    attest: () => {
      attests++;
      return Promise.reject(unavailable('cannot reach meshid-server'));
    },
  });
  const connection = startConnection(t, fx, client, identity);
  await until('the failed attestation', () => (connection.lastErrorMessage !== undefined ? true : undefined));
  assert.equal(connection.state, 'attesting', 'waiting for the next try');

  const stopping = connection.stop();
  let ended = false;
  void stopping.then(() => (ended = true));
  await idle();
  assert.equal(ended, true, 'the attestation has returned: nothing is left pending');
  assert.equal(connection.state, 'stopped');
  fx.clock.advance(600_000);
  await idle();
  assert.equal(attests, 1, 'and it never tries again');
});
