/**
 * What ServerConnection does at the agent SVID's notAfter by this host's clock while its Sync stream is open: the
 * server judges the SVID by its own clock and ends the stream at the SVID's expiry (node-sync.ts), so the agent waits
 * for that word instead of giving up an identity the server still takes (this host's clock stepped forward).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { until } from '../../support/until.js';
import { openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubServer, stubIdentity } from './stub-node-server.js';

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test("an agent SVID past its notAfter by this host's clock while a stub server keeps the Sync stream open: the agent keeps its identity, and gives it up once the server ends the stream", async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { streams, Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  const notAfter = fx.clock.now() + 60_000;
  let stops = 0;
  // Only what the connection asks of the agent identity; no join token to attest again with.
  const identity = stubIdentity({
    current: () => ({ trustDomain: 'example.org' }),
    notAfter: () => notAfter,
    expired: (now: number) => notAfter <= now,
    stop: () => void stops++,
  });
  const connection = startConnection(t, fx, client, identity);
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));

  fx.clock.advance(120_000);
  await idle();
  assert.equal(connection.state, 'synced', 'the server still takes the SVID: the stream it keeps open says so');
  assert.equal(stops, 0, 'the identity is kept');
  assert.equal(streams.length, 1, 'the stream was not cut');

  // As meshid-server ends a Sync stream at the expiry of the SVID it was opened with, by its clock.
  streams[0]!.emit('error', { code: grpc.status.UNAVAILABLE, details: "agent spiffe://example.org/a's SVID expired: this Sync stream, opened with it, ends; reconnect with the current SVID" });
  await until('the stream lost', () => (connection.state === 'disconnected' ? true : undefined));
  fx.clock.advance(750);
  assert.equal(connection.state, 'reattest-required', 'the reconnect finds the SVID expired');
  assert.equal(stops, 1);
  assert.equal(streams.length, 1, 'no stream opened with an expired SVID');
});
