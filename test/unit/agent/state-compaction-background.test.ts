/**
 * The compaction (the snapshot rewritten once the journal has outgrown it) runs off the event loop while saves go on
 * (StatePersister.startCompaction): the save that starts it returns before the snapshot is written, other work runs
 * meanwhile, every save made meanwhile survives whichever snapshot a kill leaves in place, and a snapshot written at
 * once (a ban) is never replaced by the older one still being written. "What kill -9 leaves" is a copy of the data
 * dir taken between two turns of the event loop: every write the process made is in the files then, as after a kill.
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

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const journals = (dir: string): string[] => fs.readdirSync(dir).filter((n) => /^state\.\d+\.journal$/.test(n)).sort();
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function summary(s: StoredState | undefined): unknown {
  return s && { revision: s.revision, entries: s.entries.map((e) => `${e.id}@${e.revision}`).sort(), svids: s.svids.map((v) => `${v.entryId}#${v.version}`).sort() };
}

/**
 * A store whose journal has nearly outgrown its 4 MB minimum: 1,200 entries of ~1 KB each (a snapshot of ~1.3 MB,
 * written in several chunks) and 8 SVIDs, every entry changed in each of 2 saves (~1.4 MB each).
 */
function nearlyDue(dir: string): { store: AgentStore; state: StoredState } {
  const store = AgentStore.open(dir, silentLogger());
  const entries = Array.from({ length: 1200 }, (_, i) => entry(`bg-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
  let state: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: entries.slice(0, 8).map((e) => fx.issue(e)) };
  store.saveState(state);
  for (let r = 2; r <= 3; r++) {
    state = { ...state, revision: r, entries: state.entries.map((e) => ({ ...e, revision: r })) };
    store.saveState(state);
  }
  assert.equal(store.compacting(), false, 'no compaction yet');
  return { store, state };
}

/** Runs `body` on an agent data dir `dir` inside a new temporary directory `root`, removed afterwards. */
async function inAgentDir(prefix: string, body: (dir: string, root: string) => Promise<void>): Promise<void> {
  const t = tempDir(prefix);
  try {
    await body(path.join(t.dir, 'agent'), t.dir);
  } finally {
    t.cleanup();
  }
}

/** The state an agent restarted on `dir` loads: a store opened, read and closed again. */
function loadedAgain(dir: string): StoredState | undefined {
  const restarted = AgentStore.open(dir, silentLogger());
  try {
    return restarted.loadState(fx.clock.now());
  } finally {
    restarted.close();
  }
}

/** The temporary files in `dir`: a snapshot still being written, or one given up and not removed. */
const tempFiles = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));

/** The next state: every entry changed (so the journal outgrows the snapshot), or only `revision`. */
const everyEntryChanged = (s: StoredState, revision: number): StoredState => ({ ...s, revision, entries: s.entries.map((e) => ({ ...e, revision })) });

test('a compaction does not hold the event loop: the save that starts it returns first, other work runs while the snapshot is written, and saves made meanwhile are kept', async () => {
  await inAgentDir('meshid-compaction-bg-', async (dir) => {
    let { store, state } = nearlyDue(dir);
    const snapshotIno = fs.statSync(path.join(dir, 'state.json')).ino;
    const events: string[] = [];
    // Queued before the save: a workload call waiting for its turn.
    setImmediate(() => events.push(`other work (compacting: ${store.compacting()})`));
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    events.push(`save returned (compacting: ${store.compacting()})`);
    assert.equal(fs.statSync(path.join(dir, 'state.json')).ino, snapshotIno, 'the snapshot is not rewritten inside the save');
    assert.equal(journals(dir).length, 2, 'the new generation\'s journal is there from the start');
    // A save while the compaction is under way, and a withdrawal.
    await nextTurn();
    const withdrawn = state.entries[1]!;
    state = { ...state, revision: 6, entries: state.entries.filter((e) => e !== withdrawn), svids: state.svids.filter((s) => s.entryId !== withdrawn.id) };
    store.saveWithdrawal({ bundle: state.bundle, federatedBundles: [], entries: new Map([[withdrawn.id, { entry: undefined, svid: undefined }]]) }, () => state);
    store.saveState(state);
    await store.compactionSettled();
    events.push('compaction ended');
    assert.deepEqual(events, ['save returned (compacting: true)', 'other work (compacting: true)', 'compaction ended']);
    assert.notEqual(fs.statSync(path.join(dir, 'state.json')).ino, snapshotIno, 'the new snapshot is in place');
    assert.equal(journals(dir).length, 1, 'the old journal is gone');
    store.close();
    assert.deepEqual(summary(loadedAgain(dir)), summary(state));
  });
});

test('kill -9 between any two turns of a compaction (copies of the data dir then) leaves a state that loads with every save reported before, a withdrawal among them', async () => {
  await inAgentDir('meshid-compaction-kill-', async (dir, root) => {
    let { store, state } = nearlyDue(dir);
    const copies: Array<{ dir: string; expected: unknown; files: string }> = [];
    const kill = (): void => {
      const copy = path.join(root, `kill-${copies.length}`);
      fs.cpSync(dir, copy, { recursive: true });
      fs.rmSync(path.join(copy, 'agent.lock'), { force: true });
      copies.push({ dir: copy, expected: summary(state), files: fs.readdirSync(dir).sort().join(' ') });
    };
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    assert.ok(store.compacting());
    kill();
    let revision = 5;
    let withdrawals = 0;
    while (store.compacting()) {
      await nextTurn();
      kill();
      revision++;
      if (revision % 3 === 0 && state.svids.length > 4) {
        // A withdrawal, saved alone as the agent does before workloads hear of it.
        const gone = state.svids[0]!.entryId;
        state = { ...state, entries: state.entries.filter((e) => e.id !== gone), svids: state.svids.slice(1) };
        store.saveWithdrawal({ bundle: state.bundle, federatedBundles: [], entries: new Map([[gone, { entry: undefined, svid: undefined }]]) }, () => state);
        withdrawals++;
      } else {
        // One entry changed: a small batch.
        const [first, ...rest] = state.entries as [AgentEntry, ...AgentEntry[]];
        state = { ...state, revision, entries: [{ ...first, revision }, ...rest] };
        store.saveState(state);
      }
      kill();
    }
    // The new snapshot is in place; the old journal is being removed.
    kill();
    await store.compactionSettled();
    kill();
    store.close();
    const steps = new Set(copies.map((c) => c.files));
    assert.ok(copies.length >= 6 && withdrawals >= 1, `the compaction took several turns (${copies.length} copies, ${withdrawals} withdrawals)`);
    assert.ok(steps.size >= 3, `the copies caught several steps of it: ${[...steps].join(' | ')}`);
    for (const [i, c] of copies.entries()) {
      assert.deepEqual(summary(loadedAgain(c.dir)), c.expected, `copy ${i} (files: ${c.files})`);
    }
  });
});

test('a snapshot written at once (a ban withdraws most keys) during a compaction gives the compaction up: the older snapshot being written never replaces it', async () => {
  await inAgentDir('meshid-compaction-ban-', async (dir) => {
    let { store, state } = nearlyDue(dir);
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    assert.ok(store.compacting());
    await nextTurn();
    // Every SVID and all but one entry withdrawn: their keys leave the disk at once.
    const kept = state.entries.slice(-1);
    const gone = new Map(state.entries.slice(0, -1).map((e) => [e.id, { entry: undefined, svid: undefined }]));
    state = { ...state, entries: kept, svids: [] };
    store.saveWithdrawal({ bundle: state.bundle, federatedBundles: [], entries: gone }, () => state);
    assert.equal(store.compacting(), false, 'the compaction under way is given up');
    const bannedSnapshot = fs.readFileSync(path.join(dir, 'state.json'));
    await store.compactionSettled();
    for (let i = 0; i < 20; i++) await nextTurn();
    assert.deepEqual(fs.readFileSync(path.join(dir, 'state.json')), bannedSnapshot, 'state.json is still the one the withdrawal wrote');
    assert.deepEqual(tempFiles(dir), [], 'the given-up snapshot\'s temp file is removed');
    assert.deepEqual(journals(dir), [], 'nor its journal: the snapshot written at once starts a journal of its own with the next save');
    store.close();
    assert.deepEqual(summary(loadedAgain(dir)), summary(state));
  });
});

test('close() during a compaction (the agent stopping) gives it up: nothing is renamed after, its temp file and journal go, and the state loads with every save', async () => {
  await inAgentDir('meshid-compaction-close-', async (dir) => {
    let { store, state } = nearlyDue(dir);
    const snapshot = fs.readFileSync(path.join(dir, 'state.json'));
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    assert.ok(store.compacting());
    await nextTurn();
    // The agent's last save (StateWriter.stop), then the store closes.
    state = { ...state, revision: 6 };
    store.saveState(state);
    store.close();
    await store.compactionSettled();
    for (let i = 0; i < 20; i++) await nextTurn();
    assert.deepEqual(fs.readFileSync(path.join(dir, 'state.json')), snapshot, 'the snapshot being written is not renamed in after close');
    assert.deepEqual(tempFiles(dir), [], 'its temp file is removed');
    assert.equal(journals(dir).length, 1, 'and its journal');
    assert.deepEqual(summary(loadedAgain(dir)), summary(state));
  });
});
