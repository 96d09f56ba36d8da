import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { silentLogger } from '../../../src/common/log.js';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { REFRESH_FAILURE_LOG_EVERY_MS, REFRESH_RETRY_FIRST_MS, REFRESH_RETRY_MAX_MS, SyncHub, type HubEvent } from '../../../src/server/api/sync-hub.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import type { EntryIndex } from '../../../src/server/entries/entry-index.js';
import { entry, withDatastore } from '../datastore/fixture.js';

const H = 3_600_000;
const ok = (r: { entry?: RegistrationEntry }): RegistrationEntry => r.entry!;

/** Asserts that the index holds exactly `entries` (by id, whole records, and under their parents). */
function assertIndexHolds(index: EntryIndex, entries: RegistrationEntry[]): void {
  assert.equal(index.size, entries.length);
  for (const e of entries) {
    assert.deepEqual(index.get(e.id), e);
    assert.ok(index.childrenOf(e.parentId).some((x) => x.id === e.id), `${e.id} is listed under its parent`);
  }
}

test('a hub whose index fell behind the tombstone watermark reloads every entry: an entry deleted in the pruned window is gone', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a, b, c] = (await ds.createEntries(['a', 'b', 'c', 'd'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    const hub = new SyncHub(ds, 'example.org', silentLogger());
    await hub.start();
    const events: HubEvent[] = [];
    hub.subscribe((e) => events.push(e));
    try {
      // Writes the hub does not hear of (change notifications are in-process): another server on the same file.
      const other = await openSqliteDatastore({ file, clock });
      try {
        await other.deleteEntries([a!.id]); // revision 2
        await other.updateEntry(b!.id, { parentId: 'spiffe://example.org/meshid/agent/dc1/a2' }); // revision 3
        clock.advance(25 * H);
        await other.deleteEntries([c!.id]); // revision 4, recent: its tombstone stays
        assert.equal(await other.pruneEntryTombstones(clock.now() - 24 * H), 1); // a's tombstone; watermark 2
      } finally {
        await other.close();
      }
      assert.equal(hub.index.revision, 1);
      assert.ok(hub.index.get(a!.id), 'the hub still holds a: it has heard of no change since revision 1');

      // The next change the hub hears of makes it catch up from revision 1, below the watermark.
      await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/e' })]); // revision 5
      await hub.settled();

      assertIndexHolds(hub.index, await ds.listAllEntries());
      assert.equal(hub.index.get(a!.id), undefined, 'a, deleted in the pruned window, is gone');
      assert.equal(hub.index.get(c!.id), undefined);
      assert.deepEqual(hub.index.childrenOf('spiffe://example.org/meshid/agent/dc1/a1').map((e) => e.spiffeId).sort(), [
        'spiffe://example.org/d', 'spiffe://example.org/e',
      ]);
      assert.equal(hub.index.revision, 5);
      assert.deepEqual(events, [{ kind: 'entries' }]);
    } finally {
      hub.stop();
    }
  });
});

test('an entry deleted while the hub reads its pages at start is gone from the index once the start settles, with no later change', async () => {
  await withDatastore(async ({ ds }) => {
    const [a, b] = (await ds.createEntries(['a', 'b'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    // listAllEntries lets the event loop run between its pages: here an in-process delete lands after the page that
    // held a was read (stubbed interleaving; the read and the delete are the real datastore's).
    const paged = Object.create(ds) as typeof ds;
    paged.listAllEntries = async () => {
      const all = await ds.listAllEntries();
      await ds.deleteEntries([a!.id]);
      return all;
    };
    const hub = new SyncHub(paged, 'example.org', silentLogger());
    await hub.start();
    try {
      await hub.settled();
      assert.equal(hub.index.get(a!.id), undefined, 'a, deleted during the read, is not served');
      assertIndexHolds(hub.index, [b!]);
    } finally {
      hub.stop();
    }
  });
});

test('stopping the hub tells every subscriber, and one subscribing after the stop hears it at once', async () => {
  await withDatastore(async ({ ds }) => {
    const hub = new SyncHub(ds, 'example.org', silentLogger());
    await hub.start();
    const heard: string[] = [];
    hub.subscribe((e) => heard.push(`early:${e.kind}`));
    hub.stop();
    hub.subscribe((e) => heard.push(`late:${e.kind}`));
    await Promise.resolve();
    assert.deepEqual(heard, ['early:stopping', 'late:stopping']);
  });
});

test('a federated bundle deleted and set again (its sequence back at 1) before one refresh still counts as changed', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const bundle = (td: string, sequence: number, der: number[]) => ({ trustDomain: td, x509Authorities: [Buffer.from(der)], jwtAuthorities: [], sequence, updatedAt: 0 });
    await ds.setBundle(bundle('partner.org', 1, [0x30, 1, 1]));
    await ds.setBundle(bundle('third.org', 1, [0x30, 1, 3]));
    const hub = new SyncHub(ds, 'example.org', silentLogger());
    await hub.start();
    const before = hub.federatedStamp(['partner.org', 'third.org']);
    const events: HubEvent[] = [];
    hub.subscribe((e) => events.push(e));
    // Both writes land before the hub looks (another server on the same file: the hub hears of neither).
    const other = await openSqliteDatastore({ file, clock });
    try {
      await other.deleteBundle('partner.org');
      await other.setBundle(bundle('partner.org', 1, [0x30, 1, 2]));
    } finally {
      await other.close();
    }
    await ds.setBundle(bundle('third.org', 2, [0x30, 1, 3])); // a change the hub hears of: it refreshes every bundle
    await hub.settled();
    assert.deepEqual(hub.federatedBundle('partner.org')!.x509Authorities, [Buffer.from([0x30, 1, 2])]);
    assert.notEqual(hub.federatedStamp(['partner.org']), before.split(',')[0], "partner's stamp moved: Sync streams resend it");
    assert.ok(events.some((e) => e.kind === 'federated'));
    const settled = hub.federatedStamp(['partner.org', 'third.org']);
    await ds.setBundle(bundle('third.org', 3, [0x30, 1, 3]));
    await hub.settled();
    assert.equal(hub.federatedStamp(['partner.org']), settled.split(',')[0], 'an unchanged bundle keeps its stamp');
    hub.stop();
  });
});

test('a federated bundle deleted is announced to subscribers as a federated change, and the hub stops holding it', async () => {
  await withDatastore(async ({ ds }) => {
    await ds.setBundle({ trustDomain: 'partner.org', x509Authorities: [Buffer.from([0x30, 1, 1])], jwtAuthorities: [], sequence: 1, updatedAt: 0 });
    const hub = new SyncHub(ds, 'example.org', silentLogger());
    await hub.start();
    assert.notEqual(hub.federatedBundle('partner.org'), undefined);
    const events: HubEvent[] = [];
    hub.subscribe((e) => events.push(e));
    await ds.deleteBundle('partner.org');
    await hub.settled();
    assert.equal(hub.federatedBundle('partner.org'), undefined);
    assert.deepEqual(events, [{ kind: 'federated' }], 'a deletion alone is a change Sync streams hear of');
    hub.stop();
  });
});

test('a refresh that cannot read the datastore (a damaged row) is tried again: an entry deleted meanwhile stops being served once the row reads', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a, b] = (await ds.createEntries(['a', 'b'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    const hub = new SyncHub(ds, 'example.org', silentLogger(), clock);
    await hub.start();
    const events: HubEvent[] = [];
    hub.subscribe((e) => events.push(e));
    // Another program on the file damages b's row, as a newer change than the hub has seen: its next read fails.
    const raw = new Database(file);
    try {
      raw.prepare("UPDATE registration_entries SET selectors = 'damaged', revision = 100 WHERE id = ?").run(b!.id);
      await ds.deleteEntries([a!.id]);
      await hub.settled();
      assert.ok(hub.index.get(a!.id), 'the failed refresh left the view as it was');
      assert.deepEqual(events, []);

      clock.advance(REFRESH_RETRY_FIRST_MS);
      await hub.settled();
      assert.ok(hub.index.get(a!.id), 'still damaged: the retry failed too, and is tried again later');

      raw.prepare('UPDATE registration_entries SET selectors = ? WHERE id = ?').run(JSON.stringify(b!.selectors), b!.id);
      // No further change is made: only the retry can bring the view up to date.
      clock.advance(2 * REFRESH_RETRY_FIRST_MS);
      await hub.settled();
      assert.equal(hub.index.get(a!.id), undefined, 'the deleted entry is no longer in the view that signing is authorized from');
      assertIndexHolds(hub.index, await ds.listAllEntries());
      assert.deepEqual(events, [{ kind: 'entries' }]);
      assert.equal(clock.pendingTimers(), 0, 'no retry is left once the view caught up');
    } finally {
      raw.close();
      hub.stop();
    }
  });
});

test('refreshes failing through a long datastore outage log the first failure, then one line per 10 minutes with the count since, and one info line once one succeeds', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a, b] = (await ds.createEntries(['a', 'b'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    const { log, records } = capturingLogger('meshid-server');
    const hub = new SyncHub(ds, 'example.org', log, clock);
    await hub.start();
    const lines = () => records().filter((r) => /refresh/.test(r.msg)).map((r) => ({ level: r.level, failures: r['failuresSinceLastLine'] }));
    const raw = new Database(file);
    try {
      raw.prepare("UPDATE registration_entries SET selectors = 'damaged', revision = 100 WHERE id = ?").run(b!.id);
      await ds.deleteEntries([a!.id]);
      await hub.settled();
      assert.deepEqual(lines(), [{ level: LEVEL.error, failures: undefined }]);
      // Each retry fails: 1 s, 2 s, ... up to 30 s apart. Before, every one was an error line (~2 a minute).
      for (let elapsed = 0; elapsed < 2 * REFRESH_FAILURE_LOG_EVERY_MS - REFRESH_RETRY_MAX_MS; elapsed += REFRESH_RETRY_MAX_MS / 2) {
        clock.advance(REFRESH_RETRY_MAX_MS / 2);
        await hub.settled();
      }
      const failing = lines();
      assert.equal(failing.length, 2, JSON.stringify(failing));
      assert.equal(failing[1]!.level, LEVEL.error);
      assert.ok(typeof failing[1]!.failures === 'number' && failing[1]!.failures > 10, JSON.stringify(failing));
      raw.prepare('UPDATE registration_entries SET selectors = ? WHERE id = ?').run(JSON.stringify(b!.selectors), b!.id);
      clock.advance(REFRESH_RETRY_MAX_MS);
      await hub.settled();
      assert.equal(hub.index.get(a!.id), undefined);
      const after = lines();
      assert.equal(after.length, 3, JSON.stringify(after));
      assert.equal(after[2]!.level, LEVEL.info);
    } finally {
      raw.close();
      hub.stop();
    }
  });
});

/**
 * FakeClock cannot go backwards: the hub is given a Clock reading the FakeClock an hour behind once the outage has
 * begun (the host's wall clock stepped back by NTP), while the FakeClock still drives its retry timers.
 */
test('refreshes failing on after the wall clock is stepped back an hour still log a line within 10 minutes, not once the clock has caught up', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a, b] = (await ds.createEntries(['a', 'b'].map((n) => entry({ spiffeId: `spiffe://example.org/${n}` })))).map(ok);
    const { log, records } = capturingLogger('meshid-server');
    let stepBack = 0;
    const stepped = { now: () => clock.now() - stepBack, setTimer: (fn: () => void, ms: number) => clock.setTimer(fn, ms) };
    const hub = new SyncHub(ds, 'example.org', log, stepped);
    await hub.start();
    const errors = () => records().filter((r) => /refresh/.test(r.msg) && r.level === LEVEL.error);
    const raw = new Database(file);
    try {
      raw.prepare("UPDATE registration_entries SET selectors = 'damaged', revision = 100 WHERE id = ?").run(b!.id);
      await ds.deleteEntries([a!.id]);
      await hub.settled();
      assert.equal(errors().length, 1);
      stepBack = 60 * 60_000;
      for (let elapsed = 0; elapsed < REFRESH_FAILURE_LOG_EVERY_MS + REFRESH_RETRY_MAX_MS; elapsed += REFRESH_RETRY_MAX_MS / 2) {
        clock.advance(REFRESH_RETRY_MAX_MS / 2);
        await hub.settled();
      }
      assert.ok(errors().length >= 2, `the outage is still reported after the step: ${JSON.stringify(errors().map((r) => r.msg))}`);
    } finally {
      raw.close();
      hub.stop();
    }
  });
});

test('a hub stopped while a refresh waits to be tried again leaves no timer behind', async () => {
  await withDatastore(async ({ ds, file, clock }) => {
    const [a] = (await ds.createEntries([entry()])).map(ok);
    const hub = new SyncHub(ds, 'example.org', silentLogger(), clock);
    await hub.start();
    const raw = new Database(file);
    try {
      raw.prepare("UPDATE registration_entries SET selectors = 'damaged', revision = 100 WHERE id = ?").run(a!.id);
      await ds.createEntries([entry({ spiffeId: 'spiffe://example.org/other' })]);
      await hub.settled();
      assert.equal(clock.pendingTimers(), 1);
      hub.stop();
      assert.equal(clock.pendingTimers(), 0);
    } finally {
      raw.close();
    }
  });
});
