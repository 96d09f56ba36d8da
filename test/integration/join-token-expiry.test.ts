/**
 * A join token's expiry at Attest (meshid.agent.v1.Node): usable up to its last millisecond, refused from the one it
 * expires at, and spent by that refusal, so a leaked token cannot be probed again. In-process server on a FakeClock
 * behind real time (OpenSSL judges the server's certificates by the real clock), moved by the test: no waiting for a
 * TTL to run out in real time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { startInProcessCluster } from '../support/cluster.js';
import { attestWithToken } from '../support/node-api-client.js';

test('a join token attests until the millisecond before it expires; at expiry Attest is refused PERMISSION_DENIED and the token is spent', async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const c = await startInProcessCluster(clock, 'meshid-token-expiry-');
  t.after(() => c.cleanup());
  const server = { port: () => Number(c.server.address().split(':').pop()) };
  // Both generated at the same instant, so both expire 30 s from now. Under a minute: housekeeping (on this clock)
  // does not prune the expired one first, which would turn the expiry refusal into an unknown-token one.
  const lastMoment = (await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 30 })).token!;
  const expired = (await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 30 })).token!;

  clock.advance(29_999);
  const attested = await attestWithToken(server, c.bundlePem, lastMoment);
  assert.match(attested.id, /^spiffe:\/\/example\.org\/meshid\/agent\/east\//, 'valid until its last millisecond');

  clock.advance(1);
  await assert.rejects(
    attestWithToken(server, c.bundlePem, expired),
    (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /^join token has expired/.test(e.details),
  );
  await assert.rejects(
    attestWithToken(server, c.bundlePem, expired),
    (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /unknown, already used or revoked/.test(e.details),
    'the refused expired token was spent',
  );
});
