import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { sels, withDatastore } from './fixture.js';

const agent = (n: string, overrides: Partial<AttestedAgent> = {}): AttestedAgent => ({
  spiffeId: `spiffe://example.org/meshid/agent/dc1/${n}`,
  datacenter: 'dc1',
  selectors: sels('meshid:datacenter:dc1'),
  certSerial: `${n}-s1`,
  certNotAfter: 1000,
  attestedAt: 0,
  updatedAt: 0,
  banned: false,
  ...overrides,
});

test('an agent reads back as created; get of an unknown agent is undefined', async () => {
  await withDatastore(async ({ ds }) => {
    const a = agent('a', { selectors: sels('x:2', 'x:1') });
    const stored = await ds.createAgent(a);
    assert.deepEqual(stored.selectors, sels('x:1', 'x:2'));
    assert.deepEqual(await ds.getAgent(a.spiffeId), stored);
    assert.equal((await ds.getAgent(a.spiffeId))!.previousCertSerial, undefined);
    assert.equal(await ds.getAgent('spiffe://example.org/meshid/agent/dc1/none'), undefined);
    await assert.rejects(ds.createAgent(a), (err) => isMeshidError(err, 'already_exists'));
  });
});

test('updateAgentCert records the new serial and keeps the one it was renewed from; retiring forgets that one', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const a = await ds.createAgent(agent('a'));
    clock.advance(10);
    const u = await ds.updateAgentCert(a.spiffeId, 'a-s2', 2000, 'a-s1');
    assert.equal(u.certSerial, 'a-s2');
    assert.equal(u.previousCertSerial, 'a-s1');
    assert.equal(u.certNotAfter, 2000);
    assert.equal(u.updatedAt, clock.now());
    assert.equal(u.attestedAt, 0);
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s2', 2000, 'a-s1')).previousCertSerial, 'a-s1', 'a retried write');
    // The answer was lost: the agent renews again from s1; the unused s2 is dropped, s1 stays the previous one.
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s3', 3000, 'a-s1')).previousCertSerial, 'a-s1');
    await ds.retirePreviousAgentCert(a.spiffeId, 'a-s2');
    assert.equal((await ds.getAgent(a.spiffeId))!.previousCertSerial, 'a-s1', 's2 is not current: nothing retired');
    await ds.retirePreviousAgentCert(a.spiffeId, 'a-s3');
    assert.equal((await ds.getAgent(a.spiffeId))!.previousCertSerial, undefined);
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s4', 4000, 'a-s3')).previousCertSerial, 'a-s3');
    await assert.rejects(ds.updateAgentCert('spiffe://example.org/nobody', 's', 1, 'r'), (err) => isMeshidError(err, 'not_found'));
  });
});

test('the intermediate that signed the current agent SVID is recorded at creation and at each renewal; unknown stays undefined', async () => {
  await withDatastore(async ({ ds }) => {
    const a = await ds.createAgent(agent('a', { certIssuerId: 'int-1' }));
    assert.equal((await ds.getAgent(a.spiffeId))!.certIssuerId, 'int-1');
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s2', 2000, 'a-s1', 'int-2')).certIssuerId, 'int-2');
    assert.equal((await ds.listAgents())[0]!.certIssuerId, 'int-2');
    // As an agent row from before the column reads: no issuer known.
    const b = await ds.createAgent(agent('b'));
    assert.equal((await ds.getAgent(b.spiffeId))!.certIssuerId, undefined);
    assert.equal((await ds.updateAgentCert(b.spiffeId, 'b-s2', 2000, 'b-s1')).certIssuerId, undefined);
    // A renewal whose signer is not known does not leave the last known one standing (the root revoke guard reads it).
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s3', 3000, 'a-s2')).certIssuerId, undefined);
  });
});

test('the version an agent reports is recorded at creation and by setAgentVersion, kept by renewals and forgotten by setAgentVersion(undefined); it dates nothing and changes no revision', async () => {
  await withDatastore(async ({ ds, clock }) => {
    // Attested at 5, not at the clock's 0: a report writing any fixed time (0) into updatedAt is seen moving it.
    const a = await ds.createAgent(agent('a', { agentVersion: '0.1.0+6ebd53b', attestedAt: 5, updatedAt: 5 }));
    assert.equal((await ds.getAgent(a.spiffeId))!.agentVersion, '0.1.0+6ebd53b');
    const revision = await ds.currentRevision();
    clock.advance(10);
    await ds.setAgentVersion(a.spiffeId, '0.2.0+1234567');
    const updated = (await ds.getAgent(a.spiffeId))!;
    assert.equal(updated.agentVersion, '0.2.0+1234567');
    // updatedAt dates the SVID record (agent-auth.ts tells a restored datastore by it): a report must not move it.
    assert.equal(updated.updatedAt, a.updatedAt);
    assert.equal(await ds.currentRevision(), revision);
    assert.equal((await ds.updateAgentCert(a.spiffeId, 'a-s2', 2000, 'a-s1')).agentVersion, '0.2.0+1234567', 'a renewal keeps it');
    assert.equal((await ds.listAgents())[0]!.agentVersion, '0.2.0+1234567');
    // As an agent of an earlier version: none reported.
    const b = await ds.createAgent(agent('b'));
    assert.equal((await ds.getAgent(b.spiffeId))!.agentVersion, undefined);
    await assert.rejects(ds.setAgentVersion(a.spiffeId, ''), (err) => isMeshidError(err, 'invalid_argument'));
    await ds.setAgentVersion(a.spiffeId, undefined);
    assert.equal((await ds.getAgent(a.spiffeId))!.agentVersion, undefined);
    assert.equal(await ds.currentRevision(), revision);
    await assert.rejects(ds.setAgentVersion('spiffe://example.org/meshid/agent/dc1/none', '0.1.0'), (err) => isMeshidError(err, 'not_found'));
  });
});

test('evict deletes the agent; ban keeps it listed with the flag; unknown agents are not_found', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createAgent(agent('a'));
    await ds.createAgent(agent('b'));
    await ds.createAgent(agent('c', { datacenter: 'dc2' }));
    await ds.evictAgent(agent('a').spiffeId);
    const banned = await ds.banAgent(agent('b').spiffeId);
    assert.equal(banned.banned, true);
    assert.deepEqual((await ds.listAgents()).map((x) => [x.spiffeId.split('/').pop(), x.banned]), [['b', true], ['c', false]]);
    assert.deepEqual((await ds.listAgents({ datacenter: 'dc2' })).map((x) => x.datacenter), ['dc2']);
    await assert.rejects(ds.evictAgent(agent('a').spiffeId), (err) => isMeshidError(err, 'not_found'));
    await assert.rejects(ds.banAgent(agent('a').spiffeId), (err) => isMeshidError(err, 'not_found'));
  });
});

test('pruneAgents deletes agents whose certificate expired, and only those', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createAgent(agent('a', { certNotAfter: 100 }));
    await ds.createAgent(agent('b', { certNotAfter: 200, banned: true }));
    await ds.createAgent(agent('c', { certNotAfter: 300 }));
    assert.equal((await ds.pruneAgents(200)).length, 2);
    assert.deepEqual((await ds.listAgents()).map((x) => x.certSerial), ['c-s1']);
  });
});

test('countLiveAgentsByDatacenter counts each datacenter\'s agents neither banned nor expired, leaving out datacenters with none', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createAgent(agent('a', { certNotAfter: 300 }));
    await ds.createAgent(agent('b', { certNotAfter: 300 }));
    await ds.createAgent(agent('c', { certNotAfter: 300, banned: true }));
    await ds.createAgent(agent('d', { certNotAfter: 200 }));
    await ds.createAgent(agent('e', { datacenter: 'dc2', certNotAfter: 201 }));
    await ds.createAgent(agent('f', { datacenter: 'dc3', certNotAfter: 200 }));
    await ds.createAgent(agent('g', { datacenter: 'dc4', certNotAfter: 300, banned: true }));
    // An agent whose certificate ends at `now` is expired, as pruneAgents(now) has it.
    assert.deepEqual(await ds.countLiveAgentsByDatacenter(200), new Map([['dc1', 2], ['dc2', 1]]));
    assert.deepEqual(await ds.countLiveAgentsByDatacenter(300), new Map());
  });
});
