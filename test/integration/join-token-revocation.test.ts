/**
 * Revoking a join token before it expires (admin API Tokens.RevokeJoinToken, `meshid-server token revoke`): a real
 * meshid-agent process presenting a revoked token is refused as if the token were spent, and neither the server nor
 * the agent writes the token anywhere. Expiry is driven by a fake clock on an in-process server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/common/clock.js';
import { isMeshidError } from '../../src/common/errors.js';
import { startCluster, startInProcessCluster, type Cluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';

async function withCluster<C extends Cluster>(start: () => Promise<C>, fn: (c: C) => Promise<void>): Promise<void> {
  const c = await start();
  try {
    await fn(c);
  } finally {
    await c.cleanup();
  }
}

const SPENT = /PermissionDenied: join token is unknown, already used or revoked; generate a new one with `meshid-server token generate`/;

test('an agent presenting a revoked join token is refused as for a spent one, and the token is in no log', () =>
  // Debug level: refused requests are logged there too, with their reasons.
  withCluster(() => startCluster('meshid-token-revoke-', ['--log-level', 'debug']), async (c) => {
    const revoked = await c.token();
    const revoke = await runNode(SERVER_MAIN, ['token', 'revoke', '--token', revoked, '--admin-socket', c.server.adminSocket]);
    assert.equal(revoke.code, 0, revoke.err);
    assert.match(revoke.out, /^Join token revoked\.\nDatacenter: east\n/);

    const refused = await c.startAgent({ name: 'refused', joinToken: revoked, wait: false });
    assert.equal(await refused.exitCode(), 1);
    assert.match(refused.output(), SPENT);

    // The same refusal as a token already used: nothing tells the two apart.
    const used = await c.token();
    await c.startAgent({ name: 'first', joinToken: used });
    const second = await c.startAgent({ name: 'second', joinToken: used, wait: false });
    assert.equal(await second.exitCode(), 1);
    assert.match(second.output(), SPENT);

    const again = await runNode(SERVER_MAIN, ['token', 'revoke', '--token', revoked, '--admin-socket', c.server.adminSocket]);
    assert.equal(again.code, 1);
    assert.match(again.err, /^Error: NotFound: no unused join token has this value/);

    const serverLog = c.server.output!();
    assert.match(serverLog, /"msg":"join token revoked"/);
    assert.match(serverLog, /"method":"Attest".*"msg":"request refused"/, 'the refusal is logged, so the check below covers it');
    for (const token of [revoked, used]) {
      assert.equal(serverLog.includes(token), false, 'the server log holds no token');
      assert.equal(refused.output().includes(token) || second.output().includes(token), false, 'the agent log holds no token');
    }
  }));

test('revoking an expired token is NOT_FOUND saying it expired; a live one answers with its datacenter and expiry', () => {
  const clock = new FakeClock(Date.now());
  return withCluster(() => startInProcessCluster(clock, 'meshid-token-expired-'), async (c) => {
    // Expired, but not yet a minute: housekeeping (on this clock) has not pruned it, so the server still knows it.
    const stale = await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 30 });
    const live = await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 600 });
    clock.advance(31_000);
    await assert.rejects(
      c.admin.call('Tokens', 'RevokeJoinToken', { token: stale.token! }),
      (err) => isMeshidError(err, 'not_found') && /^the join token expired at \d{4}-.*nothing to revoke$/.test(err.message),
    );
    const res = await c.admin.call('Tokens', 'RevokeJoinToken', { token: live.token! });
    assert.deepEqual(res, { datacenter: 'east', expires_at: live.expires_at });
    await assert.rejects(c.admin.call('Tokens', 'RevokeJoinToken', { token: '' }), (err) => isMeshidError(err, 'invalid_argument'));
  });
});
