import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { isMeshidError } from '../../../src/common/errors.js';
import type { Change, RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { entry, withDatastore } from './fixture.js';

const ok = (r: { entry?: RegistrationEntry }): RegistrationEntry => r.entry!;

test('a new datastore is at revision 0 with no changes', async () => {
  await withDatastore(async ({ ds }) => {
    assert.equal(await ds.currentRevision(), 0);
    assert.deepEqual(await ds.listEntryChangesSince(0), { upserts: [], deletedIds: [], revision: 0 });
  });
});

test('create, update and delete each bump the revision; changes since a revision are exactly what changed after it', async () => {
  await withDatastore(async ({ ds }) => {
    const [a, b, c] = (await ds.createEntries([
      entry({ spiffeId: 'spiffe://example.org/a' }),
      entry({ spiffeId: 'spiffe://example.org/b' }),
      entry({ spiffeId: 'spiffe://example.org/c' }),
    ])).map(ok);
    // One batch, one transaction, one revision.
    assert.equal(a!.revision, 1);
    assert.equal(b!.revision, 1);
    assert.equal(await ds.currentRevision(), 1);

    const b2 = await ds.updateEntry(b!.id, { hint: 'changed' });
    assert.equal(b2.revision, 2);
    await ds.deleteEntries([c!.id]);
    assert.equal(await ds.currentRevision(), 3);
    const [d] = (await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/d' })])).map(ok);
    assert.equal(d!.revision, 4);

    assert.deepEqual(await ds.listEntryChangesSince(1), { upserts: [b2, d], deletedIds: [c!.id], revision: 4 });
    assert.deepEqual(await ds.listEntryChangesSince(2), { upserts: [d], deletedIds: [c!.id], revision: 4 });
    assert.deepEqual(await ds.listEntryChangesSince(3), { upserts: [d], deletedIds: [], revision: 4 });
    assert.deepEqual(await ds.listEntryChangesSince(4), { upserts: [], deletedIds: [], revision: 4 });
    const full = await ds.listEntryChangesSince(0);
    assert.ok(!full.reset);
    assert.deepEqual(full.upserts.map((e) => e.spiffeId).sort(), ['spiffe://example.org/a', 'spiffe://example.org/b', 'spiffe://example.org/d']);
    assert.deepEqual(full.deletedIds, [c!.id]);
  });
});

test('advanceRevision moves the change counter exactly that far, telling no listener; the next change takes the revision after it', async () => {
  await withDatastore(async ({ ds }) => {
    const [a] = (await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/a' })])).map(ok);
    const heard: Change[] = [];
    ds.onChange((c) => void heard.push(c));
    // As a restore moves it (2^32): no revision taken after it can equal one the old server took after the backup.
    assert.equal(await ds.advanceRevision(2 ** 32), 1 + 2 ** 32);
    assert.equal(await ds.currentRevision(), 1 + 2 ** 32);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(heard, [], 'no change: nothing to tell');
    assert.deepEqual(await ds.listEntryChangesSince(1), { upserts: [], deletedIds: [], revision: 1 + 2 ** 32 });
    const b = await ds.updateEntry(a!.id, { hint: 'after' });
    assert.equal(b.revision, 2 + 2 ** 32);
  });
});

test('changes since a revision that is not a whole number at least 0 are refused, not answered with every entry', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.createEntries([entry()]);
    for (const revision of [-1, 0.5, Number.NaN]) {
      await assert.rejects(ds.listEntryChangesSince(revision), (err) => isMeshidError(err, 'invalid_argument') && /revision must be a whole number/.test(err.message), String(revision));
    }
  });
});

test('applying the change feed to a copy taken at revision N reproduces the current entries', async () => {
  await withDatastore(async ({ ds }) => {
    (await ds.createEntries(Array.from({ length: 10 }, (_, i) => entry({ spiffeId: `spiffe://example.org/w${i}` })))).map(ok);
    const copy = new Map((await ds.listAllEntries()).map((e) => [e.id, e]));
    const at = await ds.currentRevision();
    const ids = [...copy.keys()];
    await ds.updateEntry(ids[0]!, { hint: 'x' });
    await ds.deleteEntries([ids[1]!, ids[2]!]);
    await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/new' })]);
    await ds.updateEntry(ids[3]!, { dnsNames: ['d.example.org'] });
    await ds.deleteEntries([ids[3]!]);
    const changes = await ds.listEntryChangesSince(at);
    assert.ok(!changes.reset);
    for (const id of changes.deletedIds) copy.delete(id);
    for (const e of changes.upserts) copy.set(e.id, e);
    assert.deepEqual([...copy.values()].sort((x, y) => (x.id < y.id ? -1 : 1)), await ds.listAllEntries());
  });
});

test('listeners hear each committed change once, after the commit, and never a failed one', async () => {
  await withDatastore(async ({ ds }) => {
    const heard: Array<Change & { seen: number }> = [];
    const off = ds.onChange((c) => {
      // The change is visible to a read made from inside the listener: it fired after the commit.
      void ds.currentRevision().then((seen) => heard.push({ ...c, seen }));
    });
    const [a] = (await ds.createEntries([entry()])).map(ok);
    await ds.createEntries([entry()]); // duplicate: nothing committed, nothing heard
    await ds.setBundle({ trustDomain: 'partner.org', x509Authorities: [Buffer.from([1])], jwtAuthorities: [], sequence: 1, updatedAt: 0 });
    await ds.deleteEntries(['e-missing']); // nothing deleted, nothing heard
    await ds.createAgent({
      spiffeId: 'spiffe://example.org/meshid/agent/dc1/x', datacenter: 'dc1', selectors: [], certSerial: '01', certNotAfter: 10,
      attestedAt: 0, updatedAt: 0, banned: false,
    });
    await ds.banAgent('spiffe://example.org/meshid/agent/dc1/x');
    await ds.deleteEntries([a!.id]);
    off();
    await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/after-off' })]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(heard, [
      { kind: 'entry', revision: 1, seen: 1 },
      { kind: 'bundle', revision: 2, seen: 2 },
      { kind: 'agent', revision: 3, seen: 3, agentIds: ['spiffe://example.org/meshid/agent/dc1/x'] },
      { kind: 'entry', revision: 4, seen: 4 },
    ]);
  });
});

test('an agent change names the agents it changed: evicted, banned, or pruned as expired', async () => {
  await withDatastore(async ({ ds }) => {
    const id = (n: string): string => `spiffe://example.org/meshid/agent/dc1/${n}`;
    for (const [n, certNotAfter] of [['a', 10], ['b', 10], ['c', 1000], ['d', 1000]] as const) {
      await ds.createAgent({ spiffeId: id(n), datacenter: 'dc1', selectors: [], certSerial: n, certNotAfter, attestedAt: 0, updatedAt: 0, banned: false });
    }
    const heard: Array<readonly string[] | undefined> = [];
    ds.onChange((c) => heard.push(c.agentIds));
    await ds.evictAgent(id('c'));
    await ds.banAgent(id('d'));
    assert.deepEqual((await ds.pruneAgents(10)).sort(), [id('a'), id('b')]);
    assert.deepEqual(await ds.pruneAgents(10), [], 'nothing left to prune: no change');
    assert.deepEqual(heard.map((ids) => (ids === undefined ? undefined : [...ids].sort())), [[id('c')], [id('d')], [id('a'), id('b')]]);
  });
});

test('a prune of more expired agents than one call can take as arguments (a fleet whose SVIDs all ran out in an outage) still commits and names every one', async () => {
  await withDatastore(async ({ ds, file }) => {
    // More than V8 lets a spread pass as arguments (about 125,000 here); inserted beside the datastore in one
    // transaction, as createAgent takes one each.
    const n = 150_000;
    const db = new Database(file);
    try {
      const insert = db.prepare('INSERT INTO attested_agents (spiffe_id, datacenter, selectors, cert_serial, cert_not_after, attested_at, updated_at, banned) VALUES (?, ?, ?, ?, ?, 0, 0, 0)');
      db.transaction(() => {
        for (let i = 0; i < n; i++) insert.run(`spiffe://example.org/meshid/agent/dc1/${i}`, 'dc1', '[]', `s${i}`, 10);
      })();
    } finally {
      db.close();
    }
    const heard: Array<readonly string[] | undefined> = [];
    ds.onChange((c) => heard.push(c.agentIds));
    assert.equal((await ds.pruneAgents(10)).length, n);
    assert.equal(heard.length, 1);
    assert.equal(new Set(heard[0]).size, n);
    assert.deepEqual(await ds.listAgents(), []);
  });
});

test('a throwing listener does not break the write or the other listeners', async () => {
  await withDatastore(async ({ ds }) => {
    let other = 0;
    ds.onChange(() => {
      throw new Error('listener bug');
    });
    ds.onChange(() => other++);
    const [r] = await ds.createEntries([entry()]);
    assert.ok(r!.entry);
    assert.equal(other, 1);
  });
});

test('bundle set and delete bump the revision', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle({ trustDomain: 'partner.org', x509Authorities: [Buffer.from([1])], jwtAuthorities: [], sequence: 1, updatedAt: 0 });
    assert.equal(await ds.currentRevision(), 1);
    await ds.deleteBundle('partner.org');
    assert.equal(await ds.currentRevision(), 2);
  });
});
