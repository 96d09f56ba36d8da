/**
 * A withdrawal save (StatePersister.saveWithdrawal) writes only what the withdrawal concerns, so the state on disk is
 * then the last full save with the withdrawal applied: a compaction due then waits for the next full save. Started
 * from the withdrawal, its snapshot would hold changes no save has recorded (an entry added since), and a later
 * withdrawal of one of them, compared with what was saved, would find nothing to take off the disk.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { AgentEntry } from '../../../src/agent/cache/agent-entry.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import { silentLogger } from '../../../src/common/log.js';
import { tempDir } from '../../support/server-kit.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

const JOURNAL = /^state\.\d+\.journal$/;

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

/** A withdrawal's view of `state` for `ids` (the entry and SVID held for each now, undefined when gone). */
function part(state: StoredState, ids: readonly string[]) {
  return {
    bundle: state.bundle,
    federatedBundles: state.federatedBundles,
    entries: new Map(ids.map((id) => [id, { entry: state.entries.find((e) => e.id === id), svid: state.svids.find((s) => s.entryId === id) }])),
  };
}

test('an entry added after the last full save, then withdrawn, is not on disk after a restart, though a withdrawal save outgrew the compaction threshold meanwhile', async () => {
  const t = tempDir('meshid-compaction-withdrawal-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    // ~1.4 MB per save of every entry (1,200 of ~1 KB): after three, the journal nears its 4 MB threshold.
    const entries = Array.from({ length: 1200 }, (_, i) => entry(`cw-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
    let saved: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: [] };
    store.saveState(saved);
    for (let r = 2; r <= 3; r++) {
      saved = { ...saved, revision: r, entries: saved.entries.map((e) => ({ ...e, revision: r })) };
      store.saveState(saved);
    }
    assert.equal(store.compacting(), false);

    // Since that save: a new entry, and every entry's selectors changed (what workloads see: a withdrawal of each).
    const added = entry('cw-added', ['unix:uid:99999']);
    const changed: AgentEntry[] = saved.entries.map((e) => ({ ...e, revision: 4, selectors: [...e.selectors, { type: 'unix', value: 'gid:5' }] }));
    const now: StoredState = { ...saved, revision: 4, entries: [...changed, added] };
    store.saveWithdrawal(part(now, changed.map((e) => e.id)), () => now);
    await store.compactionSettled();

    // The new entry is withdrawn before any full save.
    const later: StoredState = { ...now, revision: 5, entries: changed };
    store.saveWithdrawal(part(later, [added.id]), () => later);
    await store.compactionSettled();
    store.close();

    const reopened = AgentStore.open(dir, silentLogger());
    const back = reopened.loadState(fx.clock.now());
    reopened.close();
    assert.ok(back !== undefined);
    assert.ok(!back.entries.some((e) => e.id === added.id), 'the withdrawn entry is not granted again after a restart');
    assert.equal(back.entries.length, 1200);
  } finally {
    t.cleanup();
  }
});

test('a journal left over by an earlier snapshot (its removal refused) is retried during a compaction without taking the compaction\'s own new journal: a withdrawal saved meanwhile holds after a restart', async () => {
  const t = tempDir('meshid-compaction-left-journal-');
  const real = fs.rmSync;
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    const entries = Array.from({ length: 1200 }, (_, i) => entry(`lj-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
    let state: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: entries.slice(0, 8).map((e) => fx.issue(e)) };
    store.saveState(state);
    state = { ...state, revision: 2 };
    store.saveState(state);
    const [leftOver] = fs.readdirSync(dir).filter((n) => JOURNAL.test(n));
    assert.ok(leftOver !== undefined);
    // That journal's removal is refused from now on (EIO), so every save retries it.
    fs.rmSync = (p: fs.PathLike, options?: fs.RmOptions): void => {
      if (path.basename(String(p)) === leftOver) throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' });
      real(p, options);
    };
    // Most SVIDs withdrawn (a ban's kind): a new snapshot at once; the old journal stays.
    state = { ...state, revision: 3, svids: state.svids.slice(0, 2) };
    store.saveState(state);
    assert.ok(fs.existsSync(path.join(dir, leftOver)));
    // Every entry changed, save after save, until the journal outgrows its threshold and a compaction starts.
    for (let r = 4; !store.compacting(); r++) {
      assert.ok(r < 10, 'a compaction starts');
      state = { ...state, revision: r, entries: state.entries.map((e) => ({ ...e, revision: r })) };
      store.saveState(state);
    }
    // Meanwhile an entry is withdrawn.
    const withdrawn = state.entries[5]!;
    state = { ...state, revision: state.revision + 1, entries: state.entries.filter((e) => e !== withdrawn) };
    store.saveWithdrawal({ bundle: state.bundle, federatedBundles: [], entries: new Map([[withdrawn.id, { entry: undefined, svid: undefined }]]) }, () => state);
    await store.compactionSettled();
    store.close();
    fs.rmSync = real;

    const reopened = AgentStore.open(dir, silentLogger());
    const back = reopened.loadState(fx.clock.now());
    reopened.close();
    assert.ok(back !== undefined);
    assert.ok(!back.entries.some((e) => e.id === withdrawn.id), 'the withdrawal saved during the compaction holds');
  } finally {
    fs.rmSync = real;
    t.cleanup();
  }
});
