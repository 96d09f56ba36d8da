/**
 * A compaction (the snapshot rewritten off the event loop, StatePersister.startCompaction) on a disk that fails it:
 * the state stays loadable with every save reported, and nothing escapes as an unhandled rejection (which ends the
 * agent in Node 20). The failures are real: a directory made immutable (chattr +i, root only) refuses the rename and
 * every removal in it, while the files already open in it can still be written.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import { silentLogger } from '../../../src/common/log.js';
import { tempDir } from '../../support/server-kit.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function summary(s: StoredState | undefined): unknown {
  return s && { revision: s.revision, entries: s.entries.map((e) => `${e.id}@${e.revision}`).sort(), svids: s.svids.map((v) => `${v.entryId}#${v.version}`).sort() };
}

const everyEntryChanged = (s: StoredState, revision: number): StoredState => ({ ...s, revision, entries: s.entries.map((e) => ({ ...e, revision })) });

/** A store whose next save of every entry starts a compaction (as in state-compaction-background.test.ts). */
function nearlyDue(dir: string): { store: AgentStore; state: StoredState } {
  const store = AgentStore.open(dir, silentLogger());
  const entries = Array.from({ length: 1200 }, (_, i) => entry(`fd-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
  let state: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: entries.slice(0, 8).map((e) => fx.issue(e)) };
  store.saveState(state);
  for (let r = 2; r <= 3; r++) {
    state = everyEntryChanged(state, r);
    store.saveState(state);
  }
  return { store, state };
}

test('a compaction whose rename and clean-up the directory refuses (chattr +i on the data dir, root only) is given up without an unhandled rejection, saves go on, and the state loads with every save', async (t) => {
  const d = tempDir('meshid-compaction-eperm-');
  const rejections: unknown[] = [];
  const onRejection = (err: unknown): void => void rejections.push(err);
  process.on('unhandledRejection', onRejection);
  const dir = path.join(d.dir, 'agent');
  let immutable = false;
  try {
    let { store, state } = nearlyDue(dir);
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    assert.ok(store.compacting(), 'a compaction started');
    immutable = spawnSync('chattr', ['+i', dir]).status === 0;
    if (!immutable) return t.skip('needs chattr +i (root, a file system with the immutable flag)');
    // Saves go on meanwhile; the journals are open already, so they take them.
    await nextTurn();
    state = { ...state, revision: 6 };
    store.saveState(state);
    await store.compactionSettled();
    for (let i = 0; i < 5; i++) await nextTurn();
    assert.equal(store.compacting(), false, 'the compaction is given up');
    state = { ...state, revision: 7 };
    store.saveState(state);
    spawnSync('chattr', ['-i', dir]);
    immutable = false;
    assert.deepEqual(rejections, [], 'no unhandled rejection');
    store.close();
    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(state));
    store.close();
  } finally {
    if (immutable) spawnSync('chattr', ['-i', dir]);
    process.off('unhandledRejection', onRejection);
    d.cleanup();
  }
});

test('a batch the compaction\'s new journal refuses (chattr +i on it and on the data dir, root only) is still reported saved: only the compaction is given up, and the state loads with every save', async (t) => {
  const d = tempDir('meshid-compaction-journal-eperm-');
  const dir = path.join(d.dir, 'agent');
  const locked: string[] = [];
  const unlock = (): void => {
    for (const f of locked.splice(0).reverse()) spawnSync('chattr', ['-i', f]);
  };
  try {
    let { store, state } = nearlyDue(dir);
    state = everyEntryChanged(state, 5);
    store.saveState(state);
    assert.ok(store.compacting(), 'a compaction started');
    const generations = fs.readdirSync(dir).map((n) => /^state\.(\d+)\.journal$/.exec(n)?.[1]).filter((g) => g !== undefined).map(Number);
    const newJournal = path.join(dir, `state.${Math.max(...generations)}.journal`);
    for (const f of [newJournal, dir]) {
      if (spawnSync('chattr', ['+i', f]).status !== 0) {
        unlock();
        return t.skip('needs chattr +i (root, a file system with the immutable flag)');
      }
      locked.push(f);
    }
    // Saved in the current journal, refused by the new one; the directory refuses the new one's removal too.
    state = { ...state, revision: 6 };
    assert.doesNotThrow(() => store.saveState(state), 'the batch is in the journal a restart reads: the save succeeded');
    assert.equal(store.compacting(), false, 'the compaction is given up');
    state = { ...state, revision: 7, entries: state.entries.slice(0, -1) };
    store.saveState(state);
    await store.compactionSettled();
    unlock();
    store.close();
    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(state));
    store.close();
  } finally {
    unlock();
    d.cleanup();
  }
});
