import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { entry, withDatastore } from './fixture.js';

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
