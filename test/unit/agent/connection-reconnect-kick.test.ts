/**
 * ServerConnection against a stub meshid-server: when the Sync stream comes back after an outage, the renewals that
 * failed during it are retried at once, not at the end of their backoff (the workloads' SVIDs keep running out
 * meanwhile).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SvidIssuer, type SignedItem } from '../../../src/agent/cache/svid-issuer.js';
import { silentLogger } from '../../../src/common/log.js';
import { unavailable } from '../../../src/common/errors.js';
import { until } from '../../support/until.js';
import { entry, HOUR, openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubIdentity, stubServer } from './stub-node-server.js';

test('a renewal that failed while the server was away is retried as soon as the Sync stream is back, not at its backoff', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  let down = false;
  // Streams opened while the server is 'down' are left unanswered: the agent stays unsynced until the test answers.
  const { streams, Sync } = recordedSync(() => !down);
  const client = await stubServer(t, fx, { Sync });
  const cache = fx.cache();
  const e = entry('kick/renewal', ['unix:uid:1000']);
  cache.apply({ upserts: [e] });
  cache.putSvids([fx.issue(e, HOUR)]);
  const signer = fx.signer(cache);
  const calls: boolean[] = [];
  const sign = (items: ReadonlyArray<{ entryId: string; csr: Buffer }>): Promise<SignedItem[]> => {
    calls.push(down);
    return down ? Promise.reject(unavailable('connect ECONNREFUSED')) : signer.sign(items);
  };
  // A minute's backoff at least: a retry on its own would come long after the reconnect.
  const issuer = new SvidIssuer({ cache, sign, clock: fx.clock, log: silentLogger(), random: () => 0.5, retryBackoff: { initialMs: 60_000, maxMs: 300_000, multiplier: 2 } });
  const identity = stubIdentity({ current: () => ({ trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' }) });
  const connection = startConnection(t, fx, client, identity, { cache, issuer });
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));

  // The server goes away as the SVID reaches its renewal time (half its hour): the renewal fails.
  down = true;
  streams[0]!.end();
  await until('the stream lost', () => (connection.state === 'disconnected' ? true : undefined));
  fx.clock.advance(HOUR / 2);
  await until('the failed renewal, the stream reopened but unanswered', () => (calls.length === 1 && issuer.pending().failing === 1 && streams.length === 2 ? true : undefined));

  // Back: the reopened stream gets its first answer, and the renewal goes out with it (no time passes).
  assert.notEqual(connection.state, 'synced');
  down = false;
  streams[1]!.write({ revision: 1, initial: true });
  await until('the stream back', () => (connection.state === 'synced' ? true : undefined));
  await until('the renewal retried at the reconnect', () => (calls.length === 2 ? true : undefined));
  assert.deepEqual(calls, [true, false]);
});
