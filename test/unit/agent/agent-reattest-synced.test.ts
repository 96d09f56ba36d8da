/**
 * What "synced" (IdentityCache.synced(): the entries held are meshid-server's word for this agent) means across a
 * re-attestation under a new agent ID: the entries held were the old agent's, so the flag is false again until the new
 * identity's first Sync answer. Meanwhile a caller no held entry matches gets UNAVAILABLE ("not synced … retry"), not
 * PERMISSION_DENIED, which clients such as java-spiffe take as final (workload-context.ts, sds/handler.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { until } from '../../support/until.js';
import { openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubServer, stubIdentity } from './stub-node-server.js';

test('an agent evicted by a stub server and attested again under a new agent ID is not synced until the new identity\'s first Sync answer', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  // The old agent's stream answers at once; the new agent's waits for the test.
  const { streams, Sync } = recordedSync((i) => i === 0);
  const client = await stubServer(t, fx, { Sync });
  let agentId = 'spiffe://example.org/meshid/agent/old';
  // Only what the connection asks of the agent identity; attest() stands for a join token the server takes, under a
  // new agent ID (as a join token always gives).
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org', spiffeId: agentId }),
    canReattest: () => true,
    attest: () => {
      agentId = 'spiffe://example.org/meshid/agent/new';
      return Promise.resolve(fx.bundle());
    },
  });
  const cache = fx.cache();
  const connection = startConnection(t, fx, client, identity, { cache });
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));
  assert.equal(cache.synced(), true);

  streams[0]!.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'must re-attest: agent spiffe://example.org/meshid/agent/old was evicted' });
  await until('the new identity\'s Sync stream', () => (streams.length === 2 && agentId.endsWith('/new') ? true : undefined));
  assert.equal(cache.synced(), false, "the entries held are the old agent's, not the server's word for the new one");

  streams[1]!.write({ revision: 2, initial: true });
  await until('the new identity\'s first Sync answer', () => (cache.synced() ? true : undefined));
  assert.equal(connection.state, 'synced');
});
