/**
 * Revoking a join token before it expires (admin API Tokens.RevokeJoinToken, `meshid-server token revoke`): a real
 * meshid-agent process presenting a revoked token is refused as if the token were spent, and neither the server nor
 * the agent writes the token anywhere. `token revoke --all` (Tokens.RevokeAllJoinTokens) voids every unused token at
 * once, as after restoring a backup, and of it and an Attest racing for a token exactly one gets it. Expiry is driven
 * by a fake clock on an in-process server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/common/clock.js';
import { isMeshidError } from '../../src/common/errors.js';
import { startCluster, startInProcessCluster, type Cluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN } from '../support/server-process.js';
import { attestWithToken } from '../support/node-api-client.js';

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
    assert.match(serverLog, /"rpc":"Attest".*"msg":"request refused"/, 'the refusal is logged, so the check below covers it');
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

test('RevokeAllJoinTokens counts only the tokens an agent could still have used, and takes the expired ones out too', () => {
  // Behind real time: OpenSSL judges the server's certificates by the real clock.
  const clock = new FakeClock(Date.now() - 3600_000);
  return withCluster(() => startInProcessCluster(clock, 'meshid-token-revoke-all-expired-'), async (c) => {
    const stale = await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 30 });
    await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 600 });
    await c.admin.call('Tokens', 'GenerateJoinToken', { ttl: 7 * 24 * 3600 });
    clock.advance(31_000);
    assert.deepEqual(await c.admin.call('Tokens', 'RevokeAllJoinTokens', {}), { revoked: 2 });
    await assert.rejects(
      c.admin.call('Tokens', 'RevokeJoinToken', { token: stale.token! }),
      (err) => isMeshidError(err, 'not_found') && err.message.startsWith('no unused join token has this value'),
      'the expired one is gone too, not left for housekeeping',
    );
    assert.deepEqual(await c.admin.call('Tokens', 'RevokeAllJoinTokens', {}), { revoked: 0 });
  });
});

test('token revoke --all voids every unused token and prints how many; an agent presenting one is refused as spent', () =>
  withCluster(() => startCluster('meshid-token-revoke-all-'), async (c) => {
    const used = await c.token();
    const unused = [await c.token(), await c.token(), await c.token()];
    await c.startAgent({ name: 'attested', joinToken: used });
    const revokeAll = (...extra: string[]) => runNode(SERVER_MAIN, ['token', 'revoke', '--all', ...extra, '--admin-socket', c.server.adminSocket]);

    const first = await revokeAll();
    assert.equal(first.code, 0, first.err);
    assert.equal(first.out, 'Revoked 3 unused join tokens.\n', 'the used token is not counted');
    assert.equal(first.err, '');

    const refused = await c.startAgent({ name: 'refused', joinToken: unused[1]!, wait: false });
    assert.equal(await refused.exitCode(), 1);
    assert.match(refused.output(), SPENT);

    const again = await revokeAll('--output', 'json');
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(JSON.parse(again.out), { revoked: 0 });
    const one = await c.token();
    assert.equal((await revokeAll()).out, 'Revoked 1 unused join token.\n');
    const single = await runNode(SERVER_MAIN, ['token', 'revoke', '--token', one, '--admin-socket', c.server.adminSocket]);
    assert.equal(single.code, 1);
    assert.match(single.err, /^Error: NotFound: no unused join token has this value/);

    const ambiguous = await revokeAll('--token', unused[0]!);
    assert.equal(ambiguous.code, 1);
    assert.equal(ambiguous.out, '');
    assert.equal(ambiguous.err, 'Error: InvalidArgument: --token and --all cannot be used together: --token revokes the one token given, --all every unused one\n');
    assert.match(c.server.output!(), /"revoked":1,"expired":0,"msg":"all join tokens revoked"/);
  }));

test('Attests racing token revoke --all: each token goes to exactly one of them, and a loser gets the spent-token refusal', () =>
  withCluster(() => startCluster('meshid-token-revoke-race-'), async (c) => {
    const tokens = await Promise.all(Array.from({ length: 32 }, () => c.token()));
    const server = { port: () => Number(c.server.address().split(':').pop()) };
    const attests = tokens.map((t) => attestWithToken(server, c.bundlePem, t).then(() => 'attested' as const, (err: Error) => err));
    // Revoking once the first Attest is through (only the revoke can make one fail) leaves the others in flight, so
    // the race is real whichever way each goes; which way is not asserted, only that no token is used twice.
    await Promise.race(attests);
    const { revoked = 0 } = await c.admin.call('Tokens', 'RevokeAllJoinTokens', {});
    const outcomes = await Promise.all(attests);
    const attested = outcomes.filter((o) => o === 'attested').length;
    assert.ok(attested >= 1);
    assert.equal(attested + revoked, tokens.length, `${attested} attested, ${revoked} revoked: every token is used exactly once`);
    for (const o of outcomes) {
      if (o !== 'attested') assert.match(o.message, /^7 PERMISSION_DENIED: join token is unknown, already used or revoked/);
    }
    const agents = await c.admin.call('Agents', 'ListAgents', {});
    assert.equal((agents.agents ?? []).length, attested, 'an agent is recorded for each Attest that won, none for one that lost');
    // Nothing is left for a second attempt with any of them.
    for (const t of tokens) await assert.rejects(attestWithToken(server, c.bundlePem, t), /join token is unknown, already used or revoked/);
  }));
