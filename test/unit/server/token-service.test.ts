import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { MAX_JOIN_TOKEN_TTL_SECONDS } from '../../../src/server/config.js';
import { tokenService } from '../../../src/server/api/token-service.js';
import { withDatastore, type DatastoreFixture } from '../datastore/fixture.js';

type Answer = { token: string; expires_at: number; datacenter: string; revoked: number };
type Handler = (call: { request: unknown }, cb: (err: ServiceError | null, res?: Answer) => void) => void;

const DEFAULT_TTL_MS = 3_600_000;

/** The admin API's token service over a fresh datastore, its handlers called directly (no gRPC transport). */
async function withTokens(fn: (t: DatastoreFixture & { call: (method: string, request: unknown) => Promise<{ err: ServiceError | null; res?: Answer }> }) => Promise<void>): Promise<void> {
  await withDatastore(async (fx) => {
    const svc = tokenService(fx.ds, { datacenters: ['east', 'west'], defaultTtlMs: DEFAULT_TTL_MS }, fx.clock, silentLogger());
    const call = (method: string, request: unknown) =>
      new Promise<{ err: ServiceError | null; res?: Answer }>((resolve) => (svc[method] as unknown as Handler)({ request }, (err, res) => resolve({ err, res })));
    await fn({ ...fx, call });
  });
}

test("GenerateJoinToken: the first configured datacenter by default, the server's default TTL for ttl 0, a given ttl up to 7 days", async () => {
  await withTokens(async ({ ds, clock, call }) => {
    const now = clock.now();
    const dflt = await call('GenerateJoinToken', {});
    assert.equal(dflt.err, null);
    assert.deepEqual([dflt.res!.datacenter, dflt.res!.expires_at], ['east', (now + DEFAULT_TTL_MS) / 1000]);
    const stored = await ds.findJoinToken(dflt.res!.token);
    assert.deepEqual([stored?.datacenter, stored?.expiresAt], ['east', now + DEFAULT_TTL_MS]);
    const week = await call('GenerateJoinToken', { datacenter: 'west', ttl: MAX_JOIN_TOKEN_TTL_SECONDS, selectors: [{ type: 'unix', value: 'uid:0' }] });
    assert.equal(week.err, null);
    assert.deepEqual([week.res!.datacenter, week.res!.expires_at], ['west', now / 1000 + MAX_JOIN_TOKEN_TTL_SECONDS]);
    assert.deepEqual((await ds.findJoinToken(week.res!.token))?.selectors, [{ type: 'unix', value: 'uid:0' }]);
  });
});

test('GenerateJoinToken refuses a datacenter not served, a ttl out of range and selectors of the reserved meshid type, storing nothing', async () => {
  await withTokens(async ({ call }) => {
    for (const [request, message] of [
      [{ datacenter: 'north' }, /datacenter "north" is not served by this server \(configured: east, west\)/],
      [{ ttl: MAX_JOIN_TOKEN_TTL_SECONDS + 1 }, /ttl must be between 1 and 604800 seconds/],
      [{ ttl: -1 }, /ttl must be between 1 and 604800 seconds/],
      [{ ttl: 1.5 }, /ttl must be between 1 and 604800 seconds/],
      [{ selectors: [{ type: 'meshid', value: 'datacenter:west' }] }, /selector type "meshid" is reserved/],
    ] as const) {
      const { err } = await call('GenerateJoinToken', request);
      assert.equal(err?.code, status.INVALID_ARGUMENT, JSON.stringify(request));
      assert.match(err!.details, message);
    }
    assert.equal((await call('RevokeAllJoinTokens', {})).res!.revoked, 0);
  });
});

test('RevokeJoinToken uses a token up once; an empty, unknown, used or expired (at its expiry instant) token is refused', async () => {
  await withTokens(async ({ ds, clock, call }) => {
    assert.equal((await call('RevokeJoinToken', { token: '' })).err?.code, status.INVALID_ARGUMENT);
    assert.equal((await call('RevokeJoinToken', { token: 'f'.repeat(40) })).err?.code, status.NOT_FOUND);
    const { token } = (await call('GenerateJoinToken', { datacenter: 'west', ttl: 60 })).res!;
    const revoked = await call('RevokeJoinToken', { token });
    assert.equal(revoked.err, null);
    assert.equal(revoked.res!.datacenter, 'west');
    assert.equal(await ds.findJoinToken(token), undefined);
    assert.equal((await call('RevokeJoinToken', { token })).err?.code, status.NOT_FOUND);
    const late = (await call('GenerateJoinToken', { ttl: 60 })).res!.token;
    clock.advance(60_000);
    const expired = await call('RevokeJoinToken', { token: late });
    assert.equal(expired.err?.code, status.NOT_FOUND);
    assert.match(expired.err!.details, /expired at .*nothing to revoke/);
  });
});

test('RevokeAllJoinTokens takes every token out and counts only those that had not expired', async () => {
  await withTokens(async ({ ds, clock, call }) => {
    const short = (await call('GenerateJoinToken', { ttl: 10 })).res!.token;
    const long = [(await call('GenerateJoinToken', { ttl: 100 })).res!.token, (await call('GenerateJoinToken', { ttl: 100 })).res!.token];
    clock.advance(10_000);
    const { err, res } = await call('RevokeAllJoinTokens', {});
    assert.equal(err, null);
    assert.equal(res!.revoked, 2);
    for (const t of [short, ...long]) assert.equal(await ds.findJoinToken(t), undefined);
  });
});

test("GenerateJoinToken holds a token's selectors to what an entry's may be: a unix selector the attestor never makes is refused", async () => {
  await withTokens(async ({ call }) => {
    for (const value of ['uid:0100', 'uid', 'colour:blue']) {
      const { err } = await call('GenerateJoinToken', { selectors: [{ type: 'unix', value }] });
      assert.equal(err?.code, status.INVALID_ARGUMENT, value);
    }
    assert.equal((await call('GenerateJoinToken', { selectors: [{ type: 'Unix', value: 'uid:1' }] })).err?.code, status.INVALID_ARGUMENT);
    assert.equal((await call('RevokeAllJoinTokens', {})).res!.revoked, 0, 'nothing was stored');
  });
});
