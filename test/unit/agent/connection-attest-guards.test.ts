/**
 * ServerConnection (client/server-connection.ts) against a stub meshid-server, for when the agent attests (again): one
 * attestation at a time, the trust probe only for the operator's bootstrap roots, and an expired-SVID refusal at the
 * SVID's very notAfter taken as expiry, not as clocks that disagree.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { MeshidError, unavailable } from '../../../src/common/errors.js';
import { expiredSvidRefusal } from '../../../src/server/api/agent-auth.js';
import { until } from '../../support/until.js';
import { openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubServer, stubIdentity } from './stub-node-server.js';

const AGENT = 'spiffe://example.org/meshid/agent/x';

test('a refusal of the agent SVID that comes while the agent attests again (a Renew or signing call sent before) starts no second attestation', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  let attempts = 0;
  const answers: Array<(b: TrustBundle) => void> = [];
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: AGENT }),
    canReattest: () => true,
    attest: () => {
      attempts++;
      return new Promise<TrustBundle>((resolve) => answers.push(resolve));
    },
  });
  const connection = startConnection(t, fx, client, identity);
  await until('the first Sync answer', () => (connection.state === 'synced' ? true : undefined));
  const evicted = new MeshidError('permission_denied', `must re-attest: agent ${AGENT} was evicted`);
  try {
    connection.handleRejection('reattest', evicted);
    assert.deepEqual([connection.state, attempts], ['attesting', 1]);
    // The same refusal of another call made with the old SVID, while the Attest is out.
    connection.handleRejection('reattest', evicted);
    assert.deepEqual([connection.state, attempts], ['attesting', 1], 'one attestation: a second would spend the join token again');
  } finally {
    for (const answer of answers) answer(fx.bundle());
  }
  await until('the Sync answer after the attestation', () => (connection.state === 'synced' ? true : undefined));
  assert.equal(attempts, 1);
});

test('a first attestation that cannot reach the server, by an agent holding its bundle from the data dir, is retried without probing the bootstrap roots', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const client = await stubServer(t, fx, {});
  // Restored from a data dir with no agent SVID in it: the bundle is held, the agent attests with its join token.
  const cache = fx.cache();
  let attempts = 0;
  const identity = stubIdentity({
    current: () => undefined,
    canReattest: () => true,
    attest: () => {
      attempts++;
      return Promise.reject(unavailable('connect ECONNREFUSED 127.0.0.1:8081'));
    },
  });
  let probes = 0;
  const connection = startConnection(t, fx, client, identity, {
    cache,
    bootstrapRoots: [Buffer.from('a --trust-bundle the server no longer chains to')],
    checkBootstrapTrust: () => {
      probes++;
      return Promise.resolve(new MeshidError('failed_precondition', 'the server presents a certificate the --trust-bundle does not authenticate'));
    },
  });
  await until('the failed attempt', () => (attempts === 1 && connection.lastErrorMessage !== undefined ? true : undefined));
  // At random 0.5 the first retry comes 375 ms on.
  fx.clock.advance(375);
  await until('the retry', () => (attempts === 2 ? true : undefined));
  assert.equal(probes, 0, "the roots in use are the data dir's, not the bootstrap ones: a server rotating its root is retried");
  assert.equal(connection.state, 'attesting');
});

test("the server's expired-SVID refusal at the very millisecond of the SVID's notAfter is the SVID's expiry here too: the agent attests again, not waiting for clocks to agree", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { streams, Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  const notAfter = fx.clock.now() + 60_000;
  let attempts = 0;
  let fail: ((err: unknown) => void) | undefined;
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: AGENT }),
    notAfter: () => notAfter,
    // As AgentIdentity.expired: the SVID is expired at its notAfter.
    expired: (now: number) => notAfter <= now,
    canReattest: () => true,
    attest: () => {
      attempts++;
      return new Promise<TrustBundle>((_resolve, reject) => (fail = reject));
    },
    renewalInFlight: () => (undefined as Promise<void> | undefined),
  });
  const connection = startConnection(t, fx, client, identity);
  await until('the first Sync answer', () => (connection.state === 'synced' ? true : undefined));
  // Synced, the agent keeps its stream past notAfter (the server judges by its own clock and ends it).
  fx.clock.set(notAfter);
  streams[0]!.emit('error', { code: grpc.status.PERMISSION_DENIED, details: expiredSvidRefusal(AGENT, notAfter, notAfter) });
  await until('the refusal', () => (connection.state !== 'synced' ? true : undefined));
  assert.deepEqual([connection.state, attempts], ['attesting', 1]);
  // stop() waits for the Attest out: it ends unanswered.
  const stopped = connection.stop();
  fail!(unavailable('the agent is stopping'));
  await stopped;
});
