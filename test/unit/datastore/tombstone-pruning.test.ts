import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import type { Datastore, RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { entry, sels, withDatastore } from './fixture.js';

const H = 3_600_000;
const ok = (r: { entry?: RegistrationEntry }): RegistrationEntry => r.entry!;

/** The tombstones and the pruning watermark as stored, read over a connection of their own. */
function stored(file: string): { tombstones: Array<{ entry_id: string; revision: number; deleted_at: number }>; watermark: number } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      tombstones: db.prepare('SELECT entry_id, revision, deleted_at FROM entry_tombstones ORDER BY revision').all() as Array<{
        entry_id: string; revision: number; deleted_at: number;
      }>,
      watermark: (db.prepare("SELECT value FROM revisions WHERE name = 'entry_tombstones_pruned'").get() as { value: number }).value,
    };
  } finally {
    db.close();
  }
}

test('pruneEntryTombstones removes the tombstones deleted before the cutoff, keeps the rest, and records the highest revision pruned', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a, b, c, d] = (await ds.createEntries(['a', 'b', 'c', 'd'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    const t0 = clock.now();
    await ds.deleteEntries([a!.id]); // revision 2, at t0
    clock.advance(H);
    await ds.deleteEntries([b!.id]); // revision 3, at t0 + 1 h: exactly at the cutoff below, so kept
    clock.advance(11 * H);
    await ds.deleteEntries([c!.id]); // revision 4, at t0 + 12 h
    clock.advance(13 * H);
    assert.equal(stored(file).watermark, 0, 'nothing pruned yet');

    const cutoff = clock.now() - 24 * H; // t0 + 1 h
    assert.equal(await ds.pruneEntryTombstones(cutoff), 1);
    assert.deepEqual(stored(file), {
      tombstones: [
        { entry_id: b!.id, revision: 3, deleted_at: t0 + H },
        { entry_id: c!.id, revision: 4, deleted_at: t0 + 12 * H },
      ],
      watermark: 2,
    });
    assert.equal(await ds.currentRevision(), 4, 'pruning takes no revision');
    assert.deepEqual(await ds.listAllEntries(), [d], 'live entries untouched');

    assert.equal(await ds.pruneEntryTombstones(cutoff), 0, 'a second run finds nothing');
    assert.equal(stored(file).watermark, 2);
    assert.equal(await ds.pruneEntryTombstones(clock.now() + 1), 2);
    assert.deepEqual(stored(file), { tombstones: [], watermark: 4 });
  });
});

test('pruning notifies no change listener', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const [a] = (await ds.createEntries([entry()])).map(ok);
    await ds.deleteEntries([a!.id]);
    const heard: unknown[] = [];
    ds.onChange((c) => heard.push(c));
    clock.advance(25 * H);
    assert.equal(await ds.pruneEntryTombstones(clock.now() - 24 * H), 1);
    assert.deepEqual(heard, []);
  });
});

test('the watermark never goes down, even when a tombstone with a lower revision is pruned later', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    // A second writer on the same file whose clock is two days behind: its later deletion looks older.
    const behind = new FakeClock(clock.now() - 48 * H);
    const other = await openSqliteDatastore({ file, clock: behind });
    try {
      const [x, y] = (await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/x' }), entry({ spiffeId: 'spiffe://example.org/y' })])).map(ok);
      await ds.deleteEntries([x!.id]); // revision 2, deleted at now
      await other.deleteEntries([y!.id]); // revision 3, deleted 48 h earlier by its clock
      assert.equal(await ds.pruneEntryTombstones(clock.now() - 24 * H), 1);
      assert.equal(stored(file).watermark, 3);
      assert.equal(await ds.pruneEntryTombstones(clock.now() + 1), 1);
      assert.deepEqual(stored(file), { tombstones: [], watermark: 3 });
    } finally {
      await other.close();
    }
  });
});

test('pruneEntryTombstones refuses a cutoff that is not a time', async () => {
  await withDatastore(async ({ ds }) => {
    for (const bad of [Number.NaN, -1, 1.5]) {
      await assert.rejects(ds.pruneEntryTombstones(bad), (err) => isMeshidError(err, 'invalid_argument'));
    }
  });
});

test('a reader behind the watermark gets a reset with every entry; a reader at or past it still gets a delta', async () => {
  await withDatastore(async ({ ds, clock }) => {
    const [a, b, c] = (await ds.createEntries(['a', 'b', 'c'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    await ds.deleteEntries([a!.id]); // revision 2
    clock.advance(12 * H);
    await ds.deleteEntries([b!.id]); // revision 3
    const c2 = await ds.updateEntry(c!.id, { hint: 'moved' }); // revision 4
    clock.advance(13 * H);
    assert.equal(await ds.pruneEntryTombstones(clock.now() - 24 * H), 1); // a's tombstone: watermark 2

    // From 0 or 1 the deletion of a would be missed: the feed says so and hands over the whole set.
    for (const from of [0, 1]) {
      assert.deepEqual(await ds.listEntryChangesSince(from), { reset: true, entries: [c2], revision: 4 }, `from ${from}`);
    }
    assert.deepEqual(await ds.listEntryChangesSince(2), { upserts: [c2], deletedIds: [b!.id], revision: 4 });
    assert.deepEqual(await ds.listEntryChangesSince(4), { upserts: [], deletedIds: [], revision: 4 });
  });
});

/** Deletes one entry and prunes its tombstone, so that a reader from revision 0 is answered with a reset. */
async function forceReset(ds: Datastore, clock: FakeClock): Promise<void> {
  const [gone] = (await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/gone' })])).map(ok);
  await ds.deleteEntries([gone!.id]);
  clock.advance(25 * H);
  assert.equal(await ds.pruneEntryTombstones(clock.now() - 24 * H), 1);
}

test('the reset answer holds every entry exactly as getEntry reads it: same fields, values and property order', async () => {
  await withDatastore(async ({ ds, clock, file }) => {
    const made = [
      entry(),
      entry({ spiffeId: 'spiffe://example.org/dns', dnsNames: ['b.example.org', 'a.example.org'], hint: 'front end' }),
      entry({ spiffeId: 'spiffe://example.org/fed', federatesWith: ['partner.org'], selectors: sels('unix:gid:0', 'docker:label:app=web') }),
      entry({ spiffeId: 'spiffe://example.org/admin', admin: true, x509SvidTtlSeconds: 1, jwtSvidTtlSeconds: 2_147_483_647 }),
      entry({ spiffeId: 'spiffe://example.org/down', downstream: true, x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0 }),
      entry({ spiffeId: 'spiffe://example.org/all', admin: true, downstream: true, dnsNames: ['x.example.org'], federatesWith: ['partner.org'], hint: 'é "quoted" \\ ✓' }),
    ];
    for (const e of made) {
      clock.advance(1_234);
      assert.ok(ok((await ds.createEntries([e]))[0]!));
    }
    await forceReset(ds, clock);
    const at = await ds.currentRevision();
    const [dns] = await ds.listEntries({ spiffeId: 'spiffe://example.org/dns' }).then((p) => p.entries);
    await ds.updateEntry(dns!.id, { dnsNames: ['c.example.org'], hint: 'moved' });
    // A hand-edited row: the same lists spelled with other whitespace read as the same lists.
    const db = new Database(file);
    db.prepare(`UPDATE registration_entries SET dns_names = '[ ]', federates_with = ' ["partner.org"] ' WHERE spiffe_id = ?`).run('spiffe://example.org/down');
    db.close();

    const changes = await ds.listEntryChangesSince(0);
    assert.ok(changes.reset);
    const one = await Promise.all(changes.entries.map((e) => ds.getEntry(e.id)));
    assert.equal(changes.entries.length, made.length);
    assert.equal(JSON.stringify(changes.entries), JSON.stringify(one));
    assert.deepEqual(changes.entries, one);
    assert.deepEqual(changes.entries, await ds.listAllEntries());
    // The delta reads its upserts the same way.
    const delta = await ds.listEntryChangesSince(at);
    assert.ok(!delta.reset);
    assert.equal(delta.upserts.length, 1);
    assert.equal(JSON.stringify(delta.upserts), JSON.stringify(await Promise.all(delta.upserts.map((e) => ds.getEntry(e.id)))));
  });
});

test('the reset answer refuses a row whose JSON column was damaged, as getEntry does', async () => {
  await withDatastore(async ({ ds, clock, file }) => {
    const e = ok((await ds.createEntries([entry({ dnsNames: ['a.example.org'] })]))[0]!);
    await forceReset(ds, clock);
    const db = new Database(file);
    db.prepare(`UPDATE registration_entries SET dns_names = '["a.example.org"' WHERE id = ?`).run(e.id);
    db.close();
    const one = await ds.getEntry(e.id).then(() => undefined, (err: unknown) => err);
    const reset = await ds.listEntryChangesSince(0).then(() => undefined, (err: unknown) => err);
    assert.ok(isMeshidError(one), `getEntry: ${String(one)}`);
    assert.ok(isMeshidError(reset), `listEntryChangesSince: ${String(reset)}`);
    assert.equal(reset.code, one.code);
    assert.equal(reset.message, one.message);
  });
});

test('the reset answer is one snapshot: writes landing while it is read are in neither its entries nor its revision', async () => {
  await withDatastore(async ({ ds, clock }) => {
    // More entries than one page of listAllEntries, so a reset read in pages over several turns would let writes in.
    const live = (await ds.createEntries(Array.from({ length: 6_000 }, (_, i) => entry({ spiffeId: `spiffe://example.org/w${i}` })))).map(ok);
    live.sort((a, b) => (a.id < b.id ? -1 : 1));
    const last = live[live.length - 1]!;
    await forceReset(ds, clock);

    // Every event-loop turn while the reset is pending: the entry read first (lowest id) is deleted, the one read last
    // (highest id) updated, and one created. A reset read over several turns would hold the deleted entry beside a
    // revision past its deletion, or the updated one beside a revision before its update.
    let pending = true;
    let writes = 0;
    const writer = (async () => {
      for (;;) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (!pending) return;
        await ds.deleteEntries([live[writes]!.id]);
        await ds.updateEntry(last.id, { hint: `update ${writes}` });
        await ds.createEntries([entry({ spiffeId: `spiffe://example.org/late${writes}` })]);
        writes++;
      }
    })();
    const changes = await ds.listEntryChangesSince(0).finally(() => {
      pending = false;
    });
    await writer;
    assert.ok(changes.reset);

    // No entry newer than the revision reported, and the feed from that revision brings the copy to the current set.
    assert.ok(changes.entries.every((e) => e.revision <= changes.revision), 'an entry written after the reported revision');
    const copy = new Map(changes.entries.map((e) => [e.id, e]));
    const delta = await ds.listEntryChangesSince(changes.revision);
    assert.ok(!delta.reset);
    for (const id of delta.deletedIds) copy.delete(id);
    for (const e of delta.upserts) copy.set(e.id, e);
    assert.deepEqual([...copy.values()].sort((a, b) => (a.id < b.id ? -1 : 1)), await ds.listAllEntries(), `after ${writes} write(s) meanwhile`);
  });
});
