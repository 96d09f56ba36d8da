import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { encodeJournalBatch } from '../../../src/agent/storage/state-journal.js';
import { StateWriter } from '../../../src/agent/storage/state-writer.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import type { ChangedState } from '../../../src/agent/storage/state-changes.js';
import { FakeClock } from '../../../src/common/clock.js';
import { createLogger, silentLogger } from '../../../src/common/log.js';
import { Writable } from 'node:stream';
import { tempDir } from '../../support/server-kit.js';
import { fillDisk, mountTmpfs } from '../../support/tmpfs.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';
import { teardown } from '../../support/teardown.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

function journals(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^state\.\d+\.journal$/.test(n));
}

function summary(s: StoredState | undefined): unknown {
  return s && { revision: s.revision, entries: s.entries.map((e) => e.spiffeId).sort(), svids: s.svids.map((v) => `${v.spiffeId}#${v.version}`).sort() };
}

test('after the first snapshot a save appends only what changed, and a restart reads snapshot plus journal', () => {
  const t = tempDir('meshid-journal-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const a = entry('j-a', ['unix:uid:1']);
    const b = entry('j-b', ['unix:uid:2']);
    const base: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a, b], svids: [fx.issue(a), fx.issue(b)] };
    store.saveState(base);
    const snapshot = fs.readFileSync(path.join(dir, 'state.json'), 'utf8');
    const c = entry('j-c', ['unix:uid:3']);
    const renewed = fx.issue(a);
    const next: StoredState = { ...base, revision: 2, entries: [a, c], svids: [renewed, fx.issue(c)] };
    store.saveState(next);
    store.saveState(next);
    assert.equal(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'), snapshot, 'the snapshot is not rewritten');
    const [journal] = journals(dir);
    const lines = fs.readFileSync(path.join(dir, journal!), 'utf8').split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, 'one batch per save that changed something, none for a save that did not');
    const batch = JSON.parse(lines[0]!.slice(9));
    assert.deepEqual(batch.removed_entries, [b.id]);
    assert.deepEqual(batch.entries.map((e: { id: string }) => e.id), [c.id]);
    assert.deepEqual(batch.svids.map((s: { entry_id: string }) => s.entry_id).sort(), [a.id, c.id].sort());
    assert.equal(fs.statSync(path.join(dir, journal!)).mode & 0o777, 0o600);
    store.close();

    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(next));
    store.close();
  } finally {
    t.cleanup();
  }
});

test('a withdrawal save appends only the withdrawn entry, leaving other unsaved changes to the next save', () => {
  const t = tempDir('meshid-journal-withdrawal-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const [a, b, c] = [entry('w-a', ['unix:uid:1']), entry('w-b', ['unix:uid:2']), entry('w-c', ['unix:uid:3'])];
    const saved: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a, b, c], svids: [a, b, c].map((e) => fx.issue(e)) };
    store.saveState(saved);
    // In memory since: b deleted (the withdrawal), d added and a renewed (waiting for the coalesced save).
    const d = entry('w-d', ['unix:uid:4']);
    const now: StoredState = { ...saved, revision: 3, entries: [a, c, d], svids: [fx.issue(a), saved.svids[2]!, fx.issue(d)] };
    const withdrawn = new Map([[b.id, { entry: undefined, svid: undefined }]]);
    store.saveWithdrawal({ bundle: saved.bundle, federatedBundles: [], entries: withdrawn }, () => assert.fail('no snapshot is due'));
    const [journal] = journals(dir);
    const lines = fs.readFileSync(path.join(dir, journal!), 'utf8').split('\n').filter((l) => l !== '');
    assert.deepEqual(JSON.parse(lines[0]!.slice(9)), { removed_entries: [b.id], removed_svids: [b.id] }, 'the withdrawal alone: no revision, no new SVIDs');
    store.close();

    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary({ ...saved, entries: [a, c], svids: [saved.svids[0]!, saved.svids[2]!] }), 'what was saved before, less the withdrawal');
    store.saveState(now);
    store.close();
    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(now), 'the next save brings the rest');
    store.close();
  } finally {
    t.cleanup();
  }
});

test('a save of the noted changes reads only the entries noted and appends a batch of just those, whatever the state\'s size; with nothing noted it appends nothing and reads nothing', () => {
  const t = tempDir('meshid-journal-noted-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const all = Array.from({ length: 40 }, (_, i) => entry(`n-${i}`, [`unix:uid:${i + 1}`]));
    const saved: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: all, svids: all.map((e) => fx.issue(e)) };
    store.saveState(saved);
    const journalBytes = (): number => journals(dir).reduce((n, j) => n + fs.statSync(path.join(dir, j)).size, 0);
    const asked: string[][] = [];
    let held = saved;
    const read = (ids: readonly string[]): ChangedState => {
      asked.push([...ids]);
      const entries = new Map(ids.map((id) => [id, { entry: held.entries.find((e) => e.id === id), svid: held.svids.find((s) => s.entryId === id) }]));
      return { bundle: held.bundle, federatedBundles: held.federatedBundles, revision: held.revision, entries };
    };
    const full = (): StoredState => assert.fail('no snapshot is due');

    store.saveChanges(read, full);
    assert.deepEqual(asked, [[]], 'nothing noted: no entry is read');
    assert.equal(journalBytes(), 0, 'and nothing is appended');

    // One SVID renewed among 40: the batch holds it alone (and the revision).
    const a = all[7]!;
    const renewed = fx.issue(a);
    held = { ...saved, revision: 2, svids: saved.svids.map((s) => (s.entryId === a.id ? renewed : s)) };
    store.noteChanged([a.id]);
    store.saveChanges(read, full);
    assert.deepEqual(asked[1], [a.id], 'only the noted entry is read');
    const lines = fs.readFileSync(path.join(dir, journals(dir)[0]!), 'utf8').split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1);
    const batch = JSON.parse(lines[0]!.slice(9));
    assert.deepEqual(Object.keys(batch).sort(), ['revision', 'svids']);
    assert.deepEqual(batch.svids.map((s: { serial: string }) => s.serial), [renewed.version]);

    // The notes were taken by that save: the next one reads nothing again.
    store.saveChanges(read, full);
    assert.deepEqual(asked[2], []);
    store.close();

    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(held));
    store.close();
  } finally {
    t.cleanup();
  }
});

test('a withdrawal of most SVIDs on disk rewrites the snapshot at once: no file of the data dir holds their keys any more', () => {
  const t = tempDir('meshid-journal-withdraw-most-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const [a, b, c] = [entry('m-a', ['unix:uid:1']), entry('m-b', ['unix:uid:2']), entry('m-c', ['unix:uid:3'])];
    const saved: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a, b, c], svids: [a, b, c].map((e) => fx.issue(e)) };
    store.saveState(saved);
    // b and c renewed once: their first keys are in the snapshot, the renewed ones in the journal.
    const renewed: StoredState = { ...saved, revision: 2, svids: [saved.svids[0]!, fx.issue(b), fx.issue(c)] };
    store.saveState(renewed);
    const withdrawnKeys = [...saved.svids.slice(1), ...renewed.svids.slice(1)].map((s) => s.privateKey);
    const now: StoredState = { ...renewed, entries: [a], svids: [renewed.svids[0]!] };
    const withdrawn = new Map([b.id, c.id].map((id) => [id, { entry: undefined, svid: undefined }]));
    store.saveWithdrawal({ bundle: saved.bundle, federatedBundles: [], entries: withdrawn }, () => now);
    for (const name of fs.readdirSync(dir)) {
      const bytes = fs.readFileSync(path.join(dir, name));
      for (const key of withdrawnKeys) {
        assert.ok(!bytes.includes(key) && !bytes.includes(key.toString('base64').slice(0, 64)), `${name} still holds a withdrawn key`);
      }
    }
    store.close();
    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(now));
    store.close();
  } finally {
    t.cleanup();
  }
});

test('a torn last batch is dropped and cut off, so the batches saved after the restart are read', () => {
  const t = tempDir('meshid-journal-torn-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const a = entry('t-a', ['unix:uid:1']);
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a], svids: [fx.issue(a)] };
    const s2: StoredState = { ...s1, revision: 2, svids: [fx.issue(a)] };
    store.saveState(s1);
    store.saveState(s2);
    store.close();
    const file = path.join(dir, journals(dir)[0]!);
    const good = fs.readFileSync(file);
    // The agent died in the middle of the next append.
    fs.appendFileSync(file, good.subarray(0, Math.floor(good.length / 2)));

    store = AgentStore.open(dir, silentLogger());
    const loaded = store.loadState(fx.clock.now());
    assert.deepEqual(summary(loaded), summary(s2));
    assert.equal(fs.statSync(file).size, good.length, 'the torn tail is gone');
    const s3: StoredState = { ...s1, entries: loaded!.entries, bundle: loaded!.bundle, revision: 3, svids: [fx.issue(a)] };
    store.saveState(s3);
    store.close();
    store = AgentStore.open(dir, silentLogger());
    assert.deepEqual(summary(store.loadState(fx.clock.now())), summary(s3));
    store.close();

    // A damaged line in the middle: neither the state before it nor a mix is served (the lines after it were acted
    // on, and may have withdrawn what came before), but nothing stored.
    const text = fs.readFileSync(file, 'utf8').split('\n');
    text[0] = text[0]!.replace('"revision":2', '"revision":7');
    fs.writeFileSync(file, text.join('\n'));
    store = AgentStore.open(dir, silentLogger());
    assert.equal(store.loadState(fx.clock.now()), undefined);
    store.close();
  } finally {
    t.cleanup();
  }
});

test('damage before the journal\'s end is logged as damage, not as a stop while saving; the journal is copied aside and the agent starts without stored state, since the change sets after the damage may have withdrawn what the state before it grants', () => {
  const t = tempDir('meshid-journal-midway-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const a = entry('m-a', ['unix:uid:1']);
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a], svids: [fx.issue(a)] };
    store.saveState(s1);
    for (let revision = 2; revision <= 4; revision++) store.saveState({ ...s1, revision, svids: [fx.issue(a)] });
    store.close();
    const file = path.join(dir, journals(dir)[0]!);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.length, 4, 'three batches, each a line');
    lines[0] = lines[0]!.replace('"revision":2', '"revision":7');
    const damaged = lines.join('\n');
    fs.writeFileSync(file, damaged);

    const logged: Array<Record<string, unknown>> = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (logged.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
    store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    // Revision 1 grants entry m-a; a withdrawal of it among the lost change sets would be undone by serving it.
    assert.equal(store.loadState(fx.clock.now()), undefined, 'not restored as saved before the damage');
    store.close();
    const msgs = logged.map((l) => String(l['msg']));
    assert.ok(!msgs.some((m) => /stopped while saving/.test(m)), msgs.join('\n'));
    const line = logged.find((l) => /damaged before its end/.test(String(l['msg'])));
    assert.ok(line !== undefined, msgs.join('\n'));
    assert.equal(line['level'], 50);
    assert.equal(line['lostChangeSets'], 2);
    assert.equal(line['damagedAtByte'], 0);
    const copy = path.join(dir, 'state.journal.damaged');
    assert.equal(line['copiedTo'], copy);
    assert.equal(fs.readFileSync(copy, 'utf8'), damaged, 'the evidence, as it was before the cut');
    assert.equal(fs.statSync(copy).mode & 0o777, 0o600);
    assert.equal(line['snapshotMovedTo'], path.join(dir, 'state.json.unreadable'));
    assert.ok(!fs.existsSync(path.join(dir, 'state.json')), 'a later start cannot read the snapshot without its journal');
    assert.deepEqual(journals(dir), [], 'the journal is removed once copied');

    // A torn last batch is what a stop while saving leaves, and is still called so.
    store = AgentStore.open(dir, silentLogger());
    store.loadState(fx.clock.now());
    store.saveState({ ...s1, revision: 5, svids: [fx.issue(a)] });
    store.saveState({ ...s1, revision: 6, svids: [fx.issue(a)] });
    store.close();
    const journal = path.join(dir, journals(dir)[0]!);
    const good = fs.readFileSync(journal);
    assert.ok(good.length > 0, 'the second save went to the journal');
    fs.appendFileSync(journal, good.subarray(0, Math.floor(good.length / 2)));
    logged.length = 0;
    store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    assert.equal(store.loadState(fx.clock.now())?.revision, 6);
    store.close();
    assert.deepEqual(logged.map((l) => [l['level'], String(l['msg'])]).filter(([, m]) => /journal/.test(m as string)), [
      [40, 'the state journal ends in an incomplete change set (the agent stopped while saving); it is dropped'],
    ]);
  } finally {
    t.cleanup();
  }
});

test('a last change set that fails its checksum though complete (its newline there) is damage, not a stop while saving: the withdrawal it held is not undone; the journal is copied aside and the agent starts without stored state', () => {
  const t = tempDir('meshid-journal-last-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const a = entry('l-a', ['unix:uid:1']);
    const b = entry('l-b', ['unix:uid:2']);
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a, b], svids: [fx.issue(a), fx.issue(b)] };
    store.saveState(s1);
    // The server withdrew l-b: one batch, the journal's last line.
    store.saveState({ ...s1, revision: 2, entries: [a], svids: [s1.svids[0]!] });
    store.close();
    const file = path.join(dir, journals(dir)[0]!);
    const saved = fs.readFileSync(file, 'utf8');
    assert.equal(saved.split('\n').length, 2, 'one batch, a whole line');
    // A disk fault in it: one byte changed, the length and the newline kept. A kill can only cut a line short.
    const damaged = saved.replace('"removed_entries"', '"removed_entriez"');
    assert.notEqual(damaged, saved);
    fs.writeFileSync(file, damaged);

    const logged: Array<Record<string, unknown>> = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (logged.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
    store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
    const loaded = store.loadState(fx.clock.now());
    store.close();
    assert.equal(loaded, undefined, `l-b, withdrawn, is not served again: ${JSON.stringify(summary(loaded))}`);
    const msgs = logged.map((l) => String(l['msg']));
    assert.ok(!msgs.some((m) => /stopped while saving/.test(m)), msgs.join('\n'));
    const line = logged.find((l) => /last change set fails its checksum though it is complete/.test(String(l['msg'])));
    assert.ok(line !== undefined, msgs.join('\n'));
    assert.equal(line['level'], 50);
    assert.equal(line['damagedAtByte'], 0);
    assert.equal(line['lostChangeSets'], 0);
    assert.equal(fs.readFileSync(path.join(dir, 'state.journal.damaged'), 'utf8'), damaged, 'the evidence, not cut off');
    assert.equal(line['snapshotMovedTo'], path.join(dir, 'state.json.unreadable'));
    assert.deepEqual(journals(dir), []);
  } finally {
    t.cleanup();
  }
});

for (const [shape, record, reason] of [
  ['a field of the wrong type', { id: 'u-b', spiffe_id: 'spiffe://example.org/b', selectors: 5 }, /wrong type/],
  ['an entry without selectors', { id: 'u-b', spiffe_id: 'spiffe://example.org/b', selectors: [] }, /entry u-b has no selectors/],
] as const) {
  test(`a journal change set that passes its checksum but cannot be applied (${shape}) is blamed on the journal, which is copied aside; the agent starts without stored state`, () => {
    const t = tempDir('meshid-journal-unappliable-');
    try {
      const dir = path.join(t.dir, 'agent');
      let store = AgentStore.open(dir, silentLogger());
      const a = entry('u-a', ['unix:uid:1']);
      const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a], svids: [fx.issue(a)] };
      store.saveState(s1);
      store.saveState({ ...s1, revision: 2, svids: [fx.issue(a)] });
      store.close();
      const file = path.join(dir, journals(dir)[0]!);
      // An entry record of the wrong shape, under a checksum that matches it.
      fs.appendFileSync(file, encodeJournalBatch({ revision: 3, entries: [record as never] }));
      const evidence = fs.readFileSync(file, 'utf8');
      const snapshot = fs.readFileSync(path.join(dir, 'state.json'), 'utf8');

      const logged: Array<Record<string, unknown>> = [];
      const destination = new Writable({ write: (chunk, _enc, done) => (logged.push(JSON.parse(String(chunk)) as Record<string, unknown>), done()) });
      store = AgentStore.open(dir, createLogger({ name: 'test', level: 'info', pretty: false, destination }));
      assert.equal(store.loadState(fx.clock.now()), undefined);
      store.close();
      const msgs = logged.map((l) => String(l['msg']));
      assert.ok(!msgs.some((m) => /stored state cannot be read/.test(m)), msgs.join('\n'));
      const line = logged.find((l) => /journal holds a change set that passes its checksum but cannot be applied/.test(String(l['msg'])));
      assert.ok(line !== undefined, msgs.join('\n'));
      assert.equal(line['level'], 50);
      assert.equal(line['file'], file);
      assert.match(String((line['err'] as Record<string, unknown>)['message']), reason);
      const copy = path.join(dir, 'state.journal.damaged');
      assert.equal(line['copiedTo'], copy);
      assert.equal(fs.readFileSync(copy, 'utf8'), evidence, 'the evidence, as it was');
      assert.equal(fs.statSync(copy).mode & 0o777, 0o600);
      // Without its journal the snapshot may grant what the journal withdrew: it must not be read alone later.
      assert.equal(line['snapshotMovedTo'], path.join(dir, 'state.json.unreadable'));
      assert.equal(fs.readFileSync(path.join(dir, 'state.json.unreadable'), 'utf8'), snapshot);
      assert.ok(!fs.existsSync(path.join(dir, 'state.json')));
      assert.deepEqual(journals(dir), []);
    } finally {
      t.cleanup();
    }
  });
}

test('a journal that outgrows the snapshot is folded into a new snapshot with a new journal; old journals go', async () => {
  const t = tempDir('meshid-journal-compact-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    const entries = Array.from({ length: 300 }, (_, i) => entry(`k-${i}`, [`unix:uid:${i}`], { dns_names: ['x'.repeat(200)] }));
    let state: StoredState = { trustDomain: 'example.org', revision: 0, bundle: fx.bundle(), federatedBundles: [], entries, svids: [] };
    store.saveState(state);
    const first = journals(dir);
    const generations = new Set<string>();
    for (let r = 1; r <= 120; r++) {
      // Every entry changes every time: ~100 KB per batch, so the 4 MB journal limit is crossed a few times.
      state = { ...state, revision: r, entries: state.entries.map((e) => ({ ...e, revision: r })) };
      store.saveState(state);
      for (const j of journals(dir)) generations.add(j);
      // While a compaction writes its snapshot (off the event loop), batches go to the old journal and the new one.
      assert.ok(journals(dir).length <= (store.compacting() ? 2 : 1), 'one journal, two while a compaction is under way');
      await store.compactionSettled();
      assert.ok(journals(dir).length <= 1, 'one journal once it ended');
    }
    assert.ok(generations.size >= 2, `compaction started new journals (${[...generations].join(', ')}; first ${first.join(', ')})`);
    store.close();
    const again = AgentStore.open(dir, silentLogger());
    const loaded = again.loadState(fx.clock.now());
    assert.equal(loaded?.revision, 120);
    assert.ok(loaded?.entries.every((e) => e.revision === 120));
    // A journal of another generation (a compaction cut short) is ignored and removed.
    fs.writeFileSync(path.join(dir, 'state.999.journal'), 'garbage\n');
    again.close();
    const third = AgentStore.open(dir, silentLogger());
    assert.equal(third.loadState(fx.clock.now())?.revision, 120);
    assert.ok(!fs.existsSync(path.join(dir, 'state.999.journal')));
    third.close();
  } finally {
    t.cleanup();
  }
});

test('a withdrawal the full disk refused is saved with the next one: a restart then serves neither (StateWriter + AgentStore on a real full disk)', (t) => {
  const dir = mountTmpfs(t, '1m');
  if (dir === undefined) return;
  const clock = new FakeClock(fx.clock.now());
  const store = AgentStore.open(path.join(dir, 'agent'), silentLogger());
  const [a, b, c] = [entry('f-a', ['unix:uid:1']), entry('f-b', ['unix:uid:2']), entry('f-c', ['unix:uid:3'])];
  let held: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a, b, c], svids: [a, b, c].map((e) => fx.issue(e)) };
  store.saveState(held);
  const writer = new StateWriter({ clock, log: silentLogger(), write: () => store.saveState(held) });
  // As the agent does: drop the entry from what it holds, then save just that, before any workload hears of it.
  const withdraw = (id: string): void => {
    held = { ...held, entries: held.entries.filter((e) => e.id !== id), svids: held.svids.filter((s) => s.entryId !== id) };
    const entries = new Map([[id, { entry: undefined, svid: undefined }]]);
    // Saved, never pending: a state is on disk (saveState above).
    writer.saveNow(() => void store.saveWithdrawal({ bundle: held.bundle, federatedBundles: [], entries }, () => held));
  };

  const filler = fillDisk(dir);
  withdraw(a.id); // refused: retried after a backoff
  fs.rmSync(filler);
  withdraw(b.id); // the disk takes it, before that retry is due
  // kill -9 now: nothing more is written (the fake clock does not reach the retry)
  store.close();

  const restarted = AgentStore.open(path.join(dir, 'agent'), silentLogger());
  teardown(t).after(() => restarted.close());
  assert.deepEqual(restarted.loadState(fx.clock.now())?.entries.map((e) => e.id), [c.id], 'neither withdrawn entry comes back');
});
