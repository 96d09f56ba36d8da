/**
 * ServerConnection against a stub meshid-server: an entry the Sync stream removes is handed to onWithdrawn (the
 * agent's save of the withdrawal, made before workload streams, which are scheduled, send the reduced state), and an
 * update that withdraws nothing is not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { until } from '../../support/until.js';
import { entry, openAgentFixture } from './agent-fixture.js';
import { recordedSync, startConnection, stubIdentity, stubServer } from './stub-node-server.js';

test('an entry the Sync stream removes is handed to onWithdrawn with the update that removes it; an update that only adds is not', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const { streams, Sync } = recordedSync();
  const client = await stubServer(t, fx, { Sync });
  const cache = fx.cache();
  const kept = entry('withdrawn/kept', ['unix:uid:1000']);
  const gone = entry('withdrawn/gone', ['unix:uid:1000']);
  cache.apply({ upserts: [kept, gone] });
  // A signing call that never answers: nothing but the removal tells the workload anything.
  const events: string[] = [];
  const connection = startConnection(t, fx, client, stubIdentity({ current: () => ({ trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' }) }), {
    cache,
    issuer: { sign: () => new Promise(() => undefined) },
    onWithdrawn: (ids) => events.push(`saved ${ids.join(',')}`),
  });
  await until('the first sync', () => (connection.state === 'synced' ? true : undefined));
  assert.deepEqual(events, []);

  // The removal and, after it, an update withdrawing nothing (a new entry), as two updates of the stream.
  const added = entry('withdrawn/added', ['unix:uid:1001']);
  streams[0]!.write({ revision: 2, removed_entry_ids: [gone.id] });
  streams[0]!.write({ revision: 3, entries: [entryToMessage(added)] });
  await until('both updates applied', () => (cache.entry(added.id) !== undefined ? true : undefined));
  assert.deepEqual(events, [`saved ${gone.id}`]);
});
