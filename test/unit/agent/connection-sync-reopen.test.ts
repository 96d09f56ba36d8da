/**
 * ServerConnection (client/server-connection.ts) against a stub meshid-server: what the agent asks for when it opens
 * the Sync stream, and what an open that reached its first answer resets (the reconnect backoff, the last error).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { entryFromMessage } from '../../../src/agent/cache/agent-entry.js';
import { until } from '../../support/until.js';
import { entry, openAgentFixture } from './agent-fixture.js';
import { startConnection, stubServer, type SyncCall, stubIdentity } from './stub-node-server.js';

/** Only what the connection asks of the agent identity while it holds a valid SVID. */
const validIdentity = stubIdentity({
  current: () => ({ trustDomain: 'example.org', spiffeId: 'spiffe://example.org/meshid/agent/x' }),
});

/** Lets the agent's promises and microtasks run (no time passes on its clock). */
async function idle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test('a Sync stream that reached its first answer after failed opens starts the backoff over and forgets their error: its next loss is retried after the first delay', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  // Opens 0 and 1 end at once (the server restarting); open 2 is answered and stays open; the test ends it.
  const opens: number[] = [];
  const streams: SyncCall[] = [];
  const client = await stubServer(t, fx, {
    Sync: (call: SyncCall) => {
      opens.push(fx.clock.now());
      streams.push(call);
      if (streams.length <= 2) call.end();
      else if (streams.length === 3) call.write({ revision: 1, initial: true });
    },
  });
  const connection = startConnection(t, fx, client, validIdentity);
  // At random 0.5 the backoff waits 375 ms, 750 ms, 1500 ms… (equal jitter of 500 ms doubling).
  for (const [n, wait] of [[1, 375], [2, 750]] as const) {
    await until(`failed open ${n}`, () => (opens.length === n && connection.state === 'disconnected' ? true : undefined));
    assert.notEqual(connection.lastErrorMessage, undefined, 'a failed open says why');
    fx.clock.advance(wait);
  }
  await until('the answered open', () => (opens.length === 3 && connection.state === 'synced' ? true : undefined));
  assert.equal(connection.lastErrorMessage, undefined, "a synced agent reports no error (the health check's last_error shows a past outage otherwise)");

  const lostAt = fx.clock.now();
  streams[2]!.end();
  await until('the lost stream', () => (connection.state === 'disconnected' ? true : undefined));
  for (let waited = 25; waited < 375; waited += 25) {
    fx.clock.advance(25);
    await idle();
    assert.equal(opens.length, 3, `no open ${waited} ms after the loss`);
  }
  fx.clock.advance(25);
  await until('the open at the first backoff delay, not the third (1500 ms)', () => (opens.length === 4 ? true : undefined));
  assert.equal(opens[3]! - lostAt, 375);
});

test('the Sync request names the bundle sequence held, and claims an entry held without its creation milliseconds at revision 0 (the server sends it again with them)', async (t) => {
  const fx = await openAgentFixture(Date.now() - 3_600_000);
  t.after(() => fx.close());
  const cache = fx.cache();
  cache.apply({ bundle: { ...fx.bundle(), sequence: 7 } });
  // Restored from a data dir: one entry kept from before created_at_ms, one with it.
  const legacy = entry('legacy', ['unix:uid:1000'], { revision: 41 });
  const exact = entryFromMessage({ ...legacyMessage('exact', 42), created_at_ms: 1_700_000_000_123 });
  assert.equal(legacy.createdAtExact, false);
  assert.equal(exact.createdAtExact, true);
  cache.apply({ upserts: [legacy, exact] });
  const requests: Array<{ known: Array<{ id: string; revision: number }>; bundle_sequence: number }> = [];
  const client = await stubServer(t, fx, {
    Sync: (call: grpc.ServerWritableStream<{ known: Array<{ id: string; revision: number }>; bundle_sequence: number }, unknown>) => {
      requests.push(call.request);
    },
  });
  startConnection(t, fx, client, validIdentity, { cache });
  await until('the Sync open', () => (requests.length === 1 ? true : undefined));
  assert.equal(requests[0]!.bundle_sequence, 7, 'the bundle held is not sent again unless it changed');
  const known = new Map(requests[0]!.known.map((k) => [k.id, k.revision]));
  assert.deepEqual(
    [known.get(legacy.id), known.get(exact.id)],
    [0, 42],
    'revision 0 for the entry without milliseconds (so the server sends it once more), its own for the other',
  );
});

/** An entry message in the agent's shape, as the fixture's entry() makes them, with this revision. */
function legacyMessage(name: string, revision: number): Parameters<typeof entryFromMessage>[0] {
  return {
    id: `e-${name}`,
    spiffe_id: `spiffe://example.org/${name}`,
    parent_id: 'spiffe://example.org/node',
    selectors: [{ type: 'unix', value: 'uid:1001' }],
    x509_svid_ttl: 86400,
    jwt_svid_ttl: 300,
    revision,
    created_at: 1_700_000_000,
  };
}
