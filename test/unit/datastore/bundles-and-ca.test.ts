import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import type { BundleDeleteMode, CaRecord, StoredBundle } from '../../../src/server/datastore/datastore.js';
import { entry, withDatastore } from './fixture.js';

const bundle = (td: string, sequence: number, certs: number[] = [1]): StoredBundle => ({
  trustDomain: td,
  x509Authorities: certs.map((b) => Buffer.from([0x30, b, b])),
  jwtAuthorities: [{ kid: `k${sequence}`, publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', notAfter: 99 }],
  sequence,
  updatedAt: 1234,
});

const record = (id: string, overrides: Partial<CaRecord> = {}): CaRecord => ({
  id,
  kind: 'intermediate',
  datacenter: 'dc1',
  state: 'active',
  certDer: Buffer.from([0x30, 0x01, 0x02]),
  keyId: `key-${id}`,
  notBefore: 10,
  notAfter: 20,
  createdAt: 5,
  updatedAt: 5,
  ...overrides,
});

test('a bundle round-trips byte-exact; set replaces it when the sequence grows', async () => {
  await withDatastore(async ({ ds }) => {
    assert.equal(await ds.getBundle('partner.org'), undefined);
    await ds.setBundle(bundle('partner.org', 1, [1, 2]));
    assert.deepEqual(await ds.getBundle('partner.org'), bundle('partner.org', 1, [1, 2]));
    await ds.setBundle(bundle('partner.org', 5, [3]));
    assert.deepEqual(await ds.getBundle('partner.org'), bundle('partner.org', 5, [3]));
    await ds.setBundle(bundle('another.org', 1));
    assert.deepEqual((await ds.listBundles()).map((b) => b.trustDomain), ['another.org', 'partner.org']);
  });
});

test('a bundle whose sequence does not increase is failed_precondition and leaves the stored one', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle(bundle('partner.org', 3, [1]));
    for (const seq of [3, 2]) {
      await assert.rejects(ds.setBundle(bundle('partner.org', seq, [9])), (err) => isMeshidError(err, 'failed_precondition') && /sequence/.test(err.message));
    }
    assert.deepEqual(await ds.getBundle('partner.org'), bundle('partner.org', 3, [1]));
  });
});

test('deleting a bundle removes it; deleting an absent one is not_found', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle(bundle('partner.org', 1));
    await ds.deleteBundle('partner.org');
    assert.equal(await ds.getBundle('partner.org'), undefined);
    await assert.rejects(ds.deleteBundle('partner.org'), (err) => isMeshidError(err, 'not_found') && err.message.includes('partner.org'));
  });
});

test('a bundle entries federate with: restrict (the default) refuses and changes nothing; dissociate takes it out of them', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle(bundle('partner.org', 1));
    await ds.setBundle(bundle('other.org', 1));
    const [both, partnerOnly, none] = (
      await ds.createEntries([
        entry({ spiffeId: 'spiffe://example.org/both', federatesWith: ['partner.org', 'other.org'] }),
        entry({ spiffeId: 'spiffe://example.org/partner', federatesWith: ['partner.org'] }),
        entry({ spiffeId: 'spiffe://example.org/none' }),
      ])
    ).map((r) => r.entry!);
    const revision = await ds.currentRevision();

    await assert.rejects(
      ds.deleteBundle('partner.org'),
      (err) => isMeshidError(err, 'failed_precondition') && /2 registration entries federate with partner\.org/.test(err.message) && err.message.includes(both!.id),
    );
    await assert.rejects(ds.deleteBundle('partner.org', 'restrict'), (err) => isMeshidError(err, 'failed_precondition'));
    // A mode it does not know (SPIRE's "delete", say) fails closed instead of dissociating.
    await assert.rejects(ds.deleteBundle('partner.org', 'delete' as BundleDeleteMode), (err) => isMeshidError(err, 'invalid_argument'));
    assert.ok((await ds.getBundle('partner.org')) !== undefined, 'still there');
    assert.equal(await ds.currentRevision(), revision, 'nothing written');

    assert.equal(await ds.deleteBundle('partner.org', 'dissociate'), 2);
    assert.equal(await ds.getBundle('partner.org'), undefined);
    const changes = await ds.listEntryChangesSince(revision);
    assert.ok(!('reset' in changes));
    assert.deepEqual(changes.upserts.map((e) => [e.id, e.federatesWith]).sort(), [[both!.id, ['other.org']], [partnerOnly!.id, []]].sort());
    assert.ok(changes.upserts.every((e) => e.revision > revision), 'each dissociated entry is a new revision agents hear of');
    assert.deepEqual((await ds.listEntries({ federatesWith: { match: 'superset', trustDomains: ['partner.org'] } })).entries, []);
    assert.deepEqual((await ds.listEntries({ federatesWith: { match: 'superset', trustDomains: ['other.org'] } })).entries.map((e) => e.id), [both!.id]);
    assert.equal((await ds.getEntry(none!.id))?.revision, none!.revision, 'an entry that did not federate is untouched');
  });
});

test('entry writes with federableWithoutBundle name only stored bundles or allowed domains, checked in the write itself', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle(bundle('partner.org', 1));
    const opts = { federableWithoutBundle: new Set(['configured.org']) };
    const results = await ds.createEntries([
      entry({ spiffeId: 'spiffe://example.org/stored', federatesWith: ['partner.org'] }),
      entry({ spiffeId: 'spiffe://example.org/configured', federatesWith: ['configured.org'] }),
      entry({ spiffeId: 'spiffe://example.org/typo', federatesWith: ['partner.org', 'partner.ogr'] }),
    ], opts);
    assert.ok(results[0]!.entry && results[1]!.entry);
    assert.ok(results[2]!.error && isMeshidError(results[2]!.error, 'failed_precondition'));
    assert.match(results[2]!.error.message, /federates_with names partner\.ogr, whose bundle this server does not have/);
    assert.equal((await ds.listEntries({ spiffeId: 'spiffe://example.org/typo' })).entries.length, 0);

    // A bundle deleted before the write is seen by it (the admin API used to check before its write began).
    await ds.deleteBundle('partner.org', 'dissociate');
    const late = await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/late', federatesWith: ['partner.org'] })], opts);
    assert.ok(late[0]!.error && isMeshidError(late[0]!.error, 'failed_precondition'));
    const id = results[1]!.entry!.id;
    await assert.rejects(ds.updateEntry(id, { federatesWith: ['partner.org'] }, opts), (err) => isMeshidError(err, 'failed_precondition'));
    assert.deepEqual((await ds.getEntry(id)).federatesWith, ['configured.org']);
    // Other fields of an entry stay editable without the check; without the option nothing is checked.
    assert.equal((await ds.updateEntry(id, { hint: 'h' }, { federableWithoutBundle: new Set() })).hint, 'h');
    assert.ok((await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/unchecked', federatesWith: ['partner.org'] })]))[0]!.entry);
  });
});

test('CA records round-trip, filter by kind, datacenter and state, and refuse a reused id', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('root-1', { kind: 'root', datacenter: '', createdAt: 1 }));
    await ds.addCaRecord(record('int-1'));
    await ds.addCaRecord(record('int-2', { datacenter: 'dc2', state: 'prepared', createdAt: 6 }));
    await ds.addCaRecord(record('jwt-1', { kind: 'jwt', datacenter: '', certDer: undefined, publicKeyPem: 'PEM', createdAt: 7 }));
    const all = await ds.listCaRecords();
    assert.deepEqual(all.map((r) => r.id), ['root-1', 'int-1', 'int-2', 'jwt-1']);
    assert.deepEqual(all[1], record('int-1'));
    assert.equal(all[3]!.certDer, undefined);
    assert.equal(all[3]!.publicKeyPem, 'PEM');
    assert.deepEqual((await ds.listCaRecords({ kind: 'intermediate', state: 'prepared' })).map((r) => r.id), ['int-2']);
    assert.deepEqual((await ds.listCaRecords({ datacenter: 'dc1' })).map((r) => r.id), ['int-1']);
    await assert.rejects(ds.addCaRecord(record('int-1')), (err) => isMeshidError(err, 'already_exists'));
    await assert.rejects(ds.addCaRecord(record('bad', { state: 'weird' as never })), (err) => isMeshidError(err, 'invalid_argument'));
  });
});

test('setCaRecordState switches state and updatedAt; an unknown id is not_found', async () => {
  await withDatastore(async ({ ds, clock }) => {
    await ds.addCaRecord(record('int-1'));
    await ds.setCaRecordState('int-1', 'tainted');
    const [r] = await ds.listCaRecords();
    assert.equal(r!.state, 'tainted');
    assert.equal(r!.updatedAt, clock.now());
    await assert.rejects(ds.setCaRecordState('nope', 'old'), (err) => isMeshidError(err, 'not_found'));
  });
});

test('commitCaChange applies journal changes and the bundle together', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('int-1'));
    await ds.addCaRecord(record('int-0', { state: 'old' }));
    await ds.addCaRecord(record('int-2', { state: 'prepared' }));
    await ds.commitCaChange(
      { add: [record('int-3', { state: 'prepared' })], setState: [{ id: 'int-2', state: 'active' }, { id: 'int-1', state: 'old' }], remove: ['int-0'] },
      bundle('example.org', 1),
    );
    assert.deepEqual((await ds.listCaRecords()).map((r) => `${r.id}:${r.state}`).sort(), ['int-1:old', 'int-2:active', 'int-3:prepared']);
    assert.deepEqual(await ds.getBundle('example.org'), bundle('example.org', 1));
  });
});

test('commitCaChange commits nothing when any part fails: journal and bundle stay as they were', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('int-1'));
    await ds.setBundle(bundle('example.org', 1));
    const revision = await ds.currentRevision();
    await assert.rejects(
      ds.commitCaChange({ add: [record('int-2')], setState: [{ id: 'int-1', state: 'old' }, { id: 'missing', state: 'active' }] }, bundle('example.org', 2)),
      (err) => isMeshidError(err, 'not_found') && err.message.includes('missing'),
    );
    await assert.rejects(ds.commitCaChange({ add: [record('int-2')] }, bundle('example.org', 0)), (err) => isMeshidError(err, 'failed_precondition'));
    assert.deepEqual((await ds.listCaRecords()).map((r) => `${r.id}:${r.state}`), ['int-1:active']);
    assert.deepEqual(await ds.getBundle('example.org'), bundle('example.org', 1));
    assert.equal(await ds.currentRevision(), revision);
  });
});

test('commitCaChange with the stored bundle (same sequence, same content) changes only the journal', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('int-1', { state: 'prepared' }));
    await ds.setBundle(bundle('example.org', 4));
    const revision = await ds.currentRevision();
    await ds.commitCaChange({ setState: [{ id: 'int-1', state: 'active' }] }, bundle('example.org', 4));
    assert.equal((await ds.listCaRecords())[0]!.state, 'active');
    assert.equal(await ds.currentRevision(), revision, 'no bundle change, no revision');
    // Same sequence with different content would silently publish a changed bundle under an old sequence: refused.
    await assert.rejects(ds.commitCaChange({}, bundle('example.org', 4, [7])), (err) => isMeshidError(err, 'failed_precondition'));
  });
});

test('commitCaChange keeps revoked roots in the revoke transaction: listed after it, and not at all when it fails', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('root-1', { kind: 'root', datacenter: '', state: 'tainted' }));
    await ds.setBundle(bundle('example.org', 1));
    const revoked = {
      id: 'root-1',
      subject: 'O=Example Corp, CN=Mesh CA 1',
      certFingerprint: 'ab'.repeat(32),
      subjectKeyId: 'cd'.repeat(20),
      anchorsDer: [Buffer.from([0x30, 0x01, 0x05]), Buffer.from([0x30, 0x02, 0x06, 0x07])],
      revokedAt: 77,
    };
    await assert.rejects(
      ds.commitCaChange({ remove: ['root-1'], setState: [{ id: 'missing', state: 'old' }], revoked: [revoked] }, bundle('example.org', 2)),
      (err) => isMeshidError(err, 'not_found'),
    );
    assert.deepEqual(await ds.listRevokedRoots(), []);
    await ds.commitCaChange({ remove: ['root-1'], revoked: [revoked] }, bundle('example.org', 2));
    assert.deepEqual(await ds.listCaRecords(), []);
    assert.deepEqual(await ds.listRevokedRoots(), [revoked]);
    await assert.rejects(ds.commitCaChange({ revoked: [{ ...revoked, id: 'root-2', anchorsDer: [] }] }, bundle('example.org', 2)), (err) => isMeshidError(err, 'invalid_argument'));
  });
});

test('commitCaChange keeps revoked JWT keys in the revoke transaction: listed after it, and not at all when it fails', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.addCaRecord(record('jwt-1', { kind: 'jwt', datacenter: '', state: 'tainted' }));
    await ds.setBundle(bundle('example.org', 1));
    const revoked = { id: 'jwt-1', keyId: 'kid-1', revokedAt: 78 };
    await assert.rejects(
      ds.commitCaChange({ remove: ['jwt-1'], setState: [{ id: 'missing', state: 'old' }], revokedJwtKeys: [revoked] }, bundle('example.org', 2)),
      (err) => isMeshidError(err, 'not_found'),
    );
    assert.deepEqual(await ds.listRevokedJwtKeys(), []);
    await ds.commitCaChange({ remove: ['jwt-1'], revokedJwtKeys: [revoked] }, bundle('example.org', 2));
    assert.deepEqual(await ds.listCaRecords(), []);
    assert.deepEqual(await ds.listRevokedJwtKeys(), [revoked]);
    await assert.rejects(ds.commitCaChange({ revokedJwtKeys: [{ ...revoked, id: 'jwt-2', keyId: '' }] }, bundle('example.org', 2)), (err) => isMeshidError(err, 'invalid_argument'));
  });
});
