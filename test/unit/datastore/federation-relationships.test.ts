import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import type { StoredBundle, StoredRelationship } from '../../../src/server/datastore/datastore.js';
import { entry, withDatastore } from './fixture.js';

const rel = (td: string, overrides: Partial<StoredRelationship> = {}): StoredRelationship => ({
  trustDomain: td,
  bundleEndpointUrl: `https://${td}:8443/`,
  profile: 'https_spiffe',
  endpointSpiffeId: `spiffe://${td}/meshid/server`,
  createdAt: 100,
  updatedAt: 100,
  ...overrides,
});

const seed = (td: string, sequence: number): StoredBundle => ({
  trustDomain: td, x509Authorities: [Buffer.from([0x30, 1, 1])], jwtAuthorities: [], sequence, updatedAt: 100,
});

test('federation relationships: created once, listed in order, updated keeping createdAt, deleted keeping the bundle', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createFederationRelationship(rel('b.org'));
    await ds.createFederationRelationship(rel('a.org', { profile: 'https_web', endpointSpiffeId: undefined }), { bundle: seed('a.org', 1), replaces: null });
    await assert.rejects(ds.createFederationRelationship(rel('b.org')), (err) => isMeshidError(err, 'already_exists') && err.message.includes('b.org'));
    assert.deepEqual(await ds.listFederationRelationships(), [rel('a.org', { profile: 'https_web', endpointSpiffeId: undefined }), rel('b.org')]);
    assert.deepEqual((await ds.getBundle('a.org'))?.x509Authorities, [Buffer.from([0x30, 1, 1])]);

    const updated = await ds.updateFederationRelationship(rel('b.org', { bundleEndpointUrl: 'https://new.b.org/', createdAt: 999, updatedAt: 200 }));
    assert.equal(updated.createdAt, 100);
    assert.deepEqual((await ds.listFederationRelationships())[1], rel('b.org', { bundleEndpointUrl: 'https://new.b.org/', updatedAt: 200 }));
    await assert.rejects(ds.updateFederationRelationship(rel('c.org')), (err) => isMeshidError(err, 'not_found'));

    assert.equal((await ds.deleteFederationRelationship('a.org')).trustDomain, 'a.org');
    await assert.rejects(ds.deleteFederationRelationship('a.org'), (err) => isMeshidError(err, 'not_found'));
    assert.deepEqual((await ds.listFederationRelationships()).map((r) => r.trustDomain), ['b.org']);
    assert.ok((await ds.getBundle('a.org')) !== undefined, 'the bundle stays');
  });
});

test('a relationship and its seed bundle are written together or not at all', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle(seed('a.org', 5));
    // A seed the stored bundle refuses (sequence not above 5) leaves no relationship behind.
    await assert.rejects(ds.createFederationRelationship(rel('a.org'), { bundle: seed('a.org', 5), replaces: 5 }), (err) => isMeshidError(err, 'failed_precondition'));
    assert.deepEqual(await ds.listFederationRelationships(), []);
    await assert.rejects(ds.createFederationRelationship(rel('a.org'), { bundle: seed('b.org', 1), replaces: null }), (err) => isMeshidError(err, 'invalid_argument'));
    assert.deepEqual(await ds.listFederationRelationships(), []);
    // The storage contract: an endpoint SPIFFE ID with https_spiffe only.
    await assert.rejects(ds.createFederationRelationship(rel('a.org', { endpointSpiffeId: undefined })), (err) => isMeshidError(err, 'invalid_argument'));
    await assert.rejects(ds.createFederationRelationship(rel('a.org', { profile: 'https_web' })), (err) => isMeshidError(err, 'invalid_argument'));
  });
});

test('entries may federate with a trust domain that has a relationship and no bundle yet', async () => {
  await withDatastore(async ({ ds }) => {
    const opts = { federableWithoutBundle: new Set<string>() };
    const before = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/x', federatesWith: ['a.org'] })], opts);
    assert.ok(before[0]!.error && isMeshidError(before[0]!.error, 'failed_precondition'));
    await ds.createFederationRelationship(rel('a.org'));
    const after = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/x', federatesWith: ['a.org'] })], opts);
    assert.ok(after[0]!.entry, String(after[0]!.error));
  });
});

test('a relationship whose bundle was never fetched cannot be deleted while entries federate with it', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createFederationRelationship(rel('a.org'));
    const [created] = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/x', federatesWith: ['a.org'] })], { federableWithoutBundle: new Set() });
    await assert.rejects(
      ds.deleteFederationRelationship('a.org'),
      (err) => isMeshidError(err, 'failed_precondition') && err.message.includes(created!.entry!.id) && /never fetched/.test(err.message),
    );
    assert.equal((await ds.listFederationRelationships()).length, 1);
    // With its bundle stored, the entries keep something to federate with: the relationship may go.
    await ds.setBundle(seed('a.org', 1));
    await ds.deleteFederationRelationship('a.org');
    assert.deepEqual(await ds.listFederationRelationships(), []);
  });
});

test('an update and its seed bundle are written together or not at all; a relationship-bound bundle write needs the relationship', async () => {
  await withDatastore(async ({ ds }) => {
    // Deleted meanwhile: not_found, and the seed is not stored.
    await assert.rejects(ds.updateFederationRelationship(rel('a.org'), { bundle: seed('a.org', 1), replaces: null }), (err) => isMeshidError(err, 'not_found'));
    assert.equal(await ds.getBundle('a.org'), undefined);
    await ds.createFederationRelationship(rel('a.org'), { bundle: seed('a.org', 1), replaces: null });
    // A poll stored a bundle after the update read it: aborted, the relationship unchanged.
    await assert.rejects(
      ds.updateFederationRelationship(rel('a.org', { bundleEndpointUrl: 'https://new.a.org/' }), { bundle: seed('a.org', 2), replaces: null }),
      (err) => isMeshidError(err, 'aborted') && /now sequence 1, expected none/.test(err.message),
    );
    assert.equal((await ds.listFederationRelationships())[0]!.bundleEndpointUrl, 'https://a.org:8443/');
    await ds.updateFederationRelationship(rel('a.org', { bundleEndpointUrl: 'https://new.a.org/' }), { bundle: seed('a.org', 2), replaces: 1 });
    assert.equal((await ds.getBundle('a.org'))!.sequence, 2);
    assert.equal((await ds.listFederationRelationships())[0]!.bundleEndpointUrl, 'https://new.a.org/');

    await ds.setBundle(seed('a.org', 3), { replaces: 2, relationship: true });
    await ds.deleteFederationRelationship('a.org');
    await assert.rejects(ds.setBundle(seed('a.org', 4), { replaces: 3, relationship: true }), (err) => isMeshidError(err, 'not_found'));
    assert.equal((await ds.getBundle('a.org'))!.sequence, 3);
  });
});
