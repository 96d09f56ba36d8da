/**
 * A snapshot written at once (a ban's withdrawal of most keys, StatePersister.compact) whose old journal the disk
 * refuses to remove after the new snapshot is in place: the save succeeded (a restart reads the new snapshot and its
 * journal), so it is reported as saved, with a warning naming the journal left, whose removal later saves retry. The
 * removal is made to fail by stubbing fs.rmSync for journal files (EIO), as the fsync tests stub fs.fsyncSync.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { AgentEntry } from '../../../src/agent/cache/agent-entry.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import { createLogger, silentLogger } from '../../../src/common/log.js';
import { tempDir } from '../../support/server-kit.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const JOURNAL = /^state\.\d+\.journal$/;

/** Runs `fn` with every fs.rmSync of a journal file failing EIO (other removals are real). */
function withJournalRemovalFailing<T>(fn: () => T): T {
  const real = fs.rmSync;
  fs.rmSync = (p: fs.PathLike, options?: fs.RmOptions): void => {
    if (JOURNAL.test(path.basename(String(p)))) throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' });
    real(p, options);
  };
  try {
    return fn();
  } finally {
    fs.rmSync = real;
  }
}

test('a ban\'s snapshot whose old journal cannot be removed (stubbed rmSync: EIO) is reported saved with a warning naming it, and the next save removes it', () => {
  const t = tempDir('meshid-compaction-old-journal-');
  try {
    const dir = path.join(t.dir, 'agent');
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    let store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    const all = ['a', 'b', 'c', 'd'].map((id, i) => entry(`oj-${id}`, [`unix:uid:${i + 1}`]));
    const [a] = all as [AgentEntry];
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: all, svids: all.map((x) => fx.issue(x)) };
    store.saveState(s1); // a snapshot
    const s2: StoredState = { ...s1, revision: 2 };
    store.saveState(s2); // a journal batch
    const journals = (): string[] => fs.readdirSync(dir).filter((n) => JOURNAL.test(n)).sort();
    const [oldJournal] = journals();
    assert.ok(oldJournal !== undefined, 'the second save created a journal');

    // Most SVIDs withdrawn: a new snapshot at once, which takes their keys off the disk; the old journal stays.
    const s3: StoredState = { ...s1, revision: 3, entries: [a], svids: s1.svids.slice(0, 1) };
    assert.doesNotThrow(() => withJournalRemovalFailing(() => store.saveState(s3)), 'the new snapshot is in place: the save succeeded');
    assert.ok(journals().includes(oldJournal), 'the old journal is left');
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 40);
    assert.equal(warnings.length, 1, lines.join(''));
    assert.match(String(warnings[0]!['msg']), /the agent state is saved, but the journals the new snapshot replaced cannot be removed/);
    assert.deepEqual(warnings[0]!['journals'], [oldJournal]);

    // A restart at this point reads the new snapshot (and removes the old journal).
    const copy = path.join(t.dir, 'copy');
    fs.cpSync(dir, copy, { recursive: true });
    fs.rmSync(path.join(copy, 'agent.lock'), { force: true });
    const atCopy = AgentStore.open(copy, silentLogger());
    assert.deepEqual(atCopy.loadState(fx.clock.now())?.entries.map((e) => e.id), [a.id]);
    atCopy.close();

    // The next save tries the removal again.
    const s4: StoredState = { ...s3, revision: 4 };
    store.saveState(s4);
    assert.equal(journals().includes(oldJournal), false, 'removed by the next save');
    assert.ok(lines.some((l) => l.includes('are removed now')), lines.join(''));
    store.close();
    store = AgentStore.open(dir, silentLogger());
    const loaded = store.loadState(fx.clock.now());
    store.close();
    assert.equal(loaded?.revision, 4);
    assert.deepEqual(loaded?.entries.map((e) => e.id), [a.id]);
  } finally {
    t.cleanup();
  }
});

test('a background compaction whose old journal cannot be removed (stubbed fs.promises.rm: EIO) warns naming it, and a later save removes it', async () => {
  const t = tempDir('meshid-compaction-old-journal-bg-');
  const realRm = fs.promises.rm;
  try {
    const dir = path.join(t.dir, 'agent');
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    // ~1 KB entries, every one changed in each save: the journal outgrows its 4 MB minimum within a few saves.
    const entries = Array.from({ length: 1200 }, (_, i) => entry(`ojbg-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
    let state: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: entries.slice(0, 4).map((e) => fx.issue(e)) };
    store.saveState(state);
    fs.promises.rm = async (p: fs.PathLike, options?: fs.RmOptions): Promise<void> => {
      if (JOURNAL.test(path.basename(String(p)))) throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' });
      return realRm(p, options);
    };
    let replaced: string[] = [];
    for (let r = 2; r <= 12 && !store.compacting(); r++) {
      replaced = fs.readdirSync(dir).filter((n) => JOURNAL.test(n));
      state = { ...state, revision: r, entries: state.entries.map((e) => ({ ...e, revision: r })) };
      store.saveState(state);
    }
    assert.equal(store.compacting(), true, 'a compaction started');
    const [oldJournal] = replaced;
    await store.compactionSettled();
    fs.promises.rm = realRm;
    const left = fs.readdirSync(dir).filter((n) => JOURNAL.test(n)).sort();
    assert.ok(oldJournal !== undefined && left.includes(oldJournal), `the old journal is left: ${left.join(', ')}`);
    const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 40);
    assert.equal(warnings.length, 1, lines.join(''));
    assert.match(String(warnings[0]!['msg']), /the journals the new snapshot replaced cannot be removed/);
    assert.deepEqual(warnings[0]!['journals'], [oldJournal]);

    state = { ...state, revision: 99 };
    store.saveState(state);
    assert.equal(fs.readdirSync(dir).filter((n) => JOURNAL.test(n)).length, 1, 'a later save removed the old journal');
    assert.ok(lines.some((l) => l.includes('are removed now')), lines.join(''));
    store.close();
  } finally {
    fs.promises.rm = realRm;
    t.cleanup();
  }
});
