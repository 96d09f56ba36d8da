import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { isMeshidError } from '../../../src/common/errors.js';
import { sels, withDatastore } from './fixture.js';

const H = 3_600_000;

test('a join token is consumed once: the second attempt finds nothing', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const now = clock.now();
    const stored = await ds.createJoinToken({ token: 'tok-1', datacenter: 'dc1', selectors: sels('k:b', 'k:a'), expiresAt: now + H, createdAt: now });
    assert.equal(stored.tokenHash, createHash('sha256').update('tok-1').digest('hex'));
    const got = await ds.consumeJoinToken('tok-1');
    assert.deepEqual(got, { tokenHash: stored.tokenHash, datacenter: 'dc1', selectors: sels('k:a', 'k:b'), expiresAt: now + H, createdAt: now });
    assert.equal(await ds.consumeJoinToken('tok-1'), undefined);
    assert.equal(await ds.consumeJoinToken('never-issued'), undefined);
    assert.equal(await ds.consumeJoinToken(''), undefined);
  });
});

test('concurrent consumers of one token: exactly one gets it', async () => {
  await withDatastore(async ({ ds, clock }) => {
    await ds.createJoinToken({ token: 'race', datacenter: 'dc1', selectors: [], expiresAt: clock.now() + H, createdAt: clock.now() });
    const results = await Promise.all(Array.from({ length: 8 }, () => ds.consumeJoinToken('race')));
    assert.equal(results.filter((r) => r !== undefined).length, 1);
  });
});

test('consumeAllJoinTokens deletes every token, expired ones too, in one go; a second call finds none', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const now = clock.now();
    await ds.createJoinToken({ token: 'a', datacenter: 'dc1', selectors: [], expiresAt: now + H, createdAt: now });
    await ds.createJoinToken({ token: 'b', datacenter: 'dc2', selectors: sels('k:v'), expiresAt: now + 2 * H, createdAt: now });
    await ds.createJoinToken({ token: 'gone', datacenter: 'dc1', selectors: [], expiresAt: now + 1000, createdAt: now });
    clock.advance(2000);
    const voided = await ds.consumeAllJoinTokens();
    assert.deepEqual(voided.map((t) => t.datacenter).sort(), ['dc1', 'dc1', 'dc2']);
    assert.equal(voided.find((t) => t.datacenter === 'dc2')?.selectors.length, 1);
    for (const token of ['a', 'b', 'gone']) assert.equal(await ds.findJoinToken(token), undefined);
    assert.deepEqual(await ds.consumeAllJoinTokens(), []);
  });
});

test('an expired token is still consumed (the caller checks expiry), so it cannot be retried', async () => {
  await withDatastore(async ({ ds, clock }) => {
    await ds.createJoinToken({ token: 'old', datacenter: 'dc1', selectors: [], expiresAt: clock.now() + 1000, createdAt: clock.now() });
    clock.advance(2000);
    const got = await ds.consumeJoinToken('old');
    assert.ok(got !== undefined && got.expiresAt < clock.now());
    assert.equal(await ds.consumeJoinToken('old'), undefined);
  });
});

test('the token value never reaches the database file or its WAL, only its hash', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const token = randomBytes(24).toString('base64url');
    const { tokenHash } = await ds.createJoinToken({ token, datacenter: 'dc1', selectors: [], expiresAt: clock.now() + H, createdAt: clock.now() });
    const bytes = Buffer.concat([file, `${file}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
    assert.ok(bytes.includes(Buffer.from(tokenHash)), 'the hash is stored (so the search below can find text at all)');
    assert.ok(!bytes.includes(Buffer.from(token)), 'the token value is absent');
  });
});

test('creating the same token twice is already_exists without echoing the value', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const input = { token: 'dup-secret', datacenter: 'dc1', selectors: [], expiresAt: clock.now() + H, createdAt: clock.now() };
    await ds.createJoinToken(input);
    await assert.rejects(ds.createJoinToken(input), (err) => isMeshidError(err, 'already_exists') && !err.message.includes('dup-secret'));
  });
});

test('pruneJoinTokens removes exactly the expired tokens', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const now = clock.now();
    for (const [token, ttl] of [['a', 1000], ['b', 2000], ['c', 3000]] as const) {
      await ds.createJoinToken({ token, datacenter: 'dc1', selectors: [], expiresAt: now + ttl, createdAt: now });
    }
    assert.equal(await ds.pruneJoinTokens(now + 2000), 2);
    assert.equal(await ds.consumeJoinToken('a'), undefined);
    assert.equal(await ds.consumeJoinToken('b'), undefined);
    assert.ok(await ds.consumeJoinToken('c'));
  });
});

test('an agent registered with its join token: the token goes in the same transaction, or stays when the agent is refused', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const now = clock.now();
    const agent = (id: string) => ({
      spiffeId: `spiffe://example.org/meshid/agent/dc1/${id}`, datacenter: 'dc1', selectors: [], certSerial: '01',
      certNotAfter: now + H, attestedAt: now, updatedAt: now, banned: false,
    });
    for (const token of ['t1', 't2']) await ds.createJoinToken({ token, datacenter: 'dc1', selectors: [], expiresAt: now + H, createdAt: now });
    assert.ok(await ds.findJoinToken('t1'), 'found, and left in place');
    await ds.createAgent(agent('a'), { joinToken: 't1' });
    assert.equal(await ds.findJoinToken('t1'), undefined, 'consumed with the agent');
    await assert.rejects(ds.createAgent(agent('b'), { joinToken: 't1' }), (err) => isMeshidError(err, 'not_found'));
    assert.equal(await ds.getAgent(agent('b').spiffeId), undefined, 'no agent without its token');
    await assert.rejects(ds.createAgent(agent('a'), { joinToken: 't2' }), (err) => isMeshidError(err, 'already_exists'));
    assert.ok(await ds.findJoinToken('t2'), 'a refused agent leaves its token');
  });
});
