/**
 * The agent's first state save with no state.json on disk (a new agent's first sync, a state set aside at start) writes
 * the snapshot off the event loop, as a compaction does (StatePersister.writeFirstSnapshot): the save answers
 * "pending" (false) until it is renamed in, the saves made meanwhile are pending with it, and they are saved with it.
 * "What kill -9 leaves" is a copy of the data dir taken between two turns of the event loop, as in
 * state-compaction-background.test.ts. With a state.json on disk, a snapshot is still written at once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { AgentEntry } from '../../../src/agent/cache/agent-entry.js';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import { StateWriter } from '../../../src/agent/storage/state-writer.js';
import { FakeClock } from '../../../src/common/clock.js';
import type { ChangedState } from '../../../src/agent/storage/state-changes.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import { silentLogger, type Logger } from '../../../src/common/log.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { tempDir } from '../../support/server-kit.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const journals = (dir: string): string[] => fs.readdirSync(dir).filter((n) => /^state\.\d+\.journal$/.test(n)).sort();
const temps = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'));
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function summary(s: StoredState | undefined): unknown {
  return s && { revision: s.revision, entries: s.entries.map((e) => `${e.id}@${e.revision}`).sort(), svids: s.svids.map((v) => `${v.entryId}#${v.version}`).sort() };
}

/** 1,200 entries of ~1 KB (a snapshot of ~1.3 MB, written in several chunks and turns) and 8 SVIDs. */
function firstState(): StoredState {
  const entries = Array.from({ length: 1200 }, (_, i) => entry(`first-${i}`, [`unix:uid:${i + 1}`], { dns_names: ['d'.repeat(900)] }));
  return { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries, svids: entries.slice(0, 8).map((e) => fx.issue(e)) };
}

/** The agent's save (MeshidAgent's StateWriter): what the cache noted changed, read from `state`. */
function saveChanges(store: AgentStore, state: StoredState, changed: readonly string[] = []): boolean {
  store.noteChanged(changed);
  const read = (ids: readonly string[]): ChangedState => ({
    revision: state.revision,
    bundle: state.bundle,
    federatedBundles: state.federatedBundles,
    entries: new Map(ids.map((id) => [id, { entry: state.entries.find((e) => e.id === id), svid: state.svids.find((s) => s.entryId === id) }])),
  });
  return store.saveChanges(read, () => state);
}

/** The agent's withdrawal of `id` (saved alone, at once); returns the state without it and the save's answer. */
function withdraw(store: AgentStore, state: StoredState, id: string): { state: StoredState; saved: boolean } {
  const next = { ...state, entries: state.entries.filter((e) => e.id !== id), svids: state.svids.filter((s) => s.entryId !== id) };
  const saved = store.saveWithdrawal({ bundle: next.bundle, federatedBundles: [], entries: new Map([[id, { entry: undefined, svid: undefined }]]) }, () => next);
  return { state: next, saved };
}

/** One entry changed (a small batch). */
function oneEntryChanged(state: StoredState, revision: number): { state: StoredState; id: string } {
  const [first, ...rest] = state.entries as [AgentEntry, ...AgentEntry[]];
  return { state: { ...state, revision, entries: [{ ...first, revision }, ...rest] }, id: first.id };
}

function load(dir: string, log: Logger = silentLogger()): StoredState | undefined {
  const store = AgentStore.open(dir, log);
  try {
    return store.loadState(fx.clock.now());
  } finally {
    store.close();
  }
}

test('the first save with no state.json does not hold the event loop: it answers pending before the snapshot is written, other work runs meanwhile, saves made meanwhile are pending and saved with it', async () => {
  const t = tempDir('meshid-first-save-bg-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    let state = firstState();
    const events: string[] = [];
    setImmediate(() => events.push(`other work (state.json: ${fs.existsSync(path.join(dir, 'state.json'))})`));
    events.push(`save answered ${saveChanges(store, state)} (state.json: ${fs.existsSync(path.join(dir, 'state.json'))})`);
    await nextTurn();
    ({ state } = oneEntryChanged(state, 2));
    assert.equal(saveChanges(store, state, [state.entries[0]!.id]), false, 'a save meanwhile is pending');
    const w = withdraw(store, state, state.svids[1]!.entryId);
    state = w.state;
    assert.equal(w.saved, false, 'so is a withdrawal: no state is on disk to grant what it withdrew');
    await store.compactionSettled();
    events.push(`written (state.json: ${fs.existsSync(path.join(dir, 'state.json'))})`);
    assert.deepEqual(events, ['save answered false (state.json: false)', 'other work (state.json: false)', 'written (state.json: true)']);
    assert.equal(saveChanges(store, state), true, 'once it is in place, a save answers saved');
    assert.deepEqual(journals(dir), ['state.1.journal']);
    assert.deepEqual(temps(dir), []);
    store.close();
    assert.deepEqual(summary(load(dir)), summary(state));
  } finally {
    t.cleanup();
  }
});

test('kill -9 between any two turns of the first save (copies of the data dir then) leaves no state or one with every save made, a withdrawal among them, and none before one was reported saved', async () => {
  const t = tempDir('meshid-first-save-kill-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    let state = firstState();
    let reportedSaved: unknown;
    const copies: Array<{ dir: string; latest: unknown; reportedSaved: unknown; files: string }> = [];
    const kill = (): void => {
      const copy = path.join(t.dir, `kill-${copies.length}`);
      fs.cpSync(dir, copy, { recursive: true });
      fs.rmSync(path.join(copy, 'agent.lock'), { force: true });
      copies.push({ dir: copy, latest: summary(state), reportedSaved, files: fs.readdirSync(dir).sort().join(' ') });
    };
    assert.equal(saveChanges(store, state), false);
    kill();
    let revision = 1;
    let withdrawals = 0;
    let pendingAnswers = 0;
    while (store.compacting()) {
      await nextTurn();
      kill();
      revision++;
      let saved: boolean;
      if (revision % 3 === 0 && state.svids.length > 4) {
        ({ state, saved } = withdraw(store, state, state.svids[0]!.entryId));
        withdrawals++;
      } else {
        const changed = oneEntryChanged(state, revision);
        state = changed.state;
        saved = saveChanges(store, state, [changed.id]);
      }
      if (saved) reportedSaved = summary(state);
      else pendingAnswers++;
      kill();
    }
    await store.compactionSettled();
    kill();
    assert.equal(saveChanges(store, state), true);
    reportedSaved = summary(state);
    kill();
    store.close();
    const steps = new Set(copies.map((c) => c.files));
    assert.ok(copies.length >= 6 && withdrawals >= 1 && pendingAnswers >= 2, `the first save took several turns (${copies.length} copies, ${withdrawals} withdrawals, ${pendingAnswers} saves pending)`);
    assert.ok(steps.size >= 2, `the copies caught the state before and after the rename: ${[...steps].join(' | ')}`);
    let without = 0;
    for (const [i, c] of copies.entries()) {
      const loaded = load(c.dir);
      if (loaded === undefined) {
        without++;
        assert.equal(c.reportedSaved, undefined, `copy ${i} (files: ${c.files}) has no state, but a save had been reported saved`);
      } else {
        // Everything saved, pending ones included: a withdrawal is never undone by a snapshot taken before it.
        assert.deepEqual(summary(loaded), c.latest, `copy ${i} (files: ${c.files})`);
      }
    }
    assert.ok(without >= 1 && without < copies.length, `some copies were taken before the rename (${without}), some after`);
  } finally {
    t.cleanup();
  }
});

test("the agent's StateWriter makes no save attempt while the first snapshot is being written, however much time and change pass (injectable clock), and one right after it is in place; a stop meanwhile writes it at once", async () => {
  for (const stopMeanwhile of [false, true]) {
    const t = tempDir('meshid-first-save-writer-');
    try {
      const dir = path.join(t.dir, 'agent');
      const store = AgentStore.open(dir, silentLogger());
      const clock = new FakeClock();
      let state = firstState();
      let attempts = 0;
      // As MeshidAgent's: pending answers the store's promise of the background write's end.
      const writer = new StateWriter({
        clock,
        log: silentLogger(),
        delayMs: 200,
        write: () => {
          attempts++;
          return saveChanges(store, state) ? undefined : store.compactionSettled();
        },
      });
      writer.markDirty();
      clock.advance(200);
      assert.deepEqual([attempts, store.compacting()], [1, true], 'the first save answered pending');
      // Changes go on (the cache noting them, the writer told), the clock runs far past the delay, turns pass.
      let turns = 0;
      while (store.compacting() && !(stopMeanwhile && turns === 2)) {
        ({ state } = oneEntryChanged(state, turns + 2));
        store.noteChanged([state.entries[0]!.id]);
        writer.markDirty();
        clock.advance(60_000);
        assert.equal(attempts, 1, `no save attempt while the background write is pending (turn ${turns})`);
        await nextTurn();
        turns++;
      }
      assert.ok(turns >= 2, `the background write took ${turns} turns`);
      if (stopMeanwhile) {
        assert.equal(store.compacting(), true);
        // The agent stopping: the writer's last save (pending too), then the store writes the first snapshot at once.
        writer.stop();
        assert.equal(attempts, 2, 'stop saves at once');
        store.close();
        assert.equal(fs.existsSync(path.join(dir, 'state.json')), true, 'written at once by close');
        await store.compactionSettled();
        for (let i = 0; i < 5; i++) await nextTurn();
        assert.equal(attempts, 2, 'and not again once the background write has ended');
      } else {
        await store.compactionSettled();
        assert.equal(attempts, 2, 'one save right after the background write completed');
        assert.equal(store.compacting(), false);
        clock.advance(60_000);
        assert.equal(attempts, 2, 'saved: nothing more to write');
        writer.stop();
        store.close();
      }
      assert.deepEqual(summary(load(dir)), summary(state), 'every change made meanwhile is saved');
    } finally {
      t.cleanup();
    }
  }
});

test('close() during the first save (the agent stopping) writes it at once: the saves pending with it are saved, and nothing is renamed after', async () => {
  const t = tempDir('meshid-first-save-close-');
  try {
    const dir = path.join(t.dir, 'agent');
    const { log, records } = capturingLogger('meshid-agent');
    const store = AgentStore.open(dir, log);
    let state = firstState();
    assert.equal(saveChanges(store, state), false);
    await nextTurn();
    // The agent's last saves (a withdrawal, StateWriter.stop's flush), then the store closes.
    ({ state } = withdraw(store, state, state.svids[0]!.entryId));
    const changed = oneEntryChanged(state, 7);
    state = changed.state;
    assert.equal(saveChanges(store, state, [changed.id]), false);
    assert.equal(fs.existsSync(path.join(dir, 'state.json')), false);
    store.close();
    assert.equal(fs.existsSync(path.join(dir, 'state.json')), true, 'written inside close()');
    const written = fs.readFileSync(path.join(dir, 'state.json'));
    assert.ok(records().some((r) => r.level === LEVEL.info && /written at once/.test(r.msg)));
    await store.compactionSettled();
    for (let i = 0; i < 20; i++) await nextTurn();
    assert.deepEqual(fs.readFileSync(path.join(dir, 'state.json')), written, 'the background write renames nothing after close');
    assert.deepEqual(temps(dir), [], 'and removes its temp file');
    assert.deepEqual(journals(dir), ['state.1.journal']);
    assert.deepEqual(summary(load(dir)), summary(state));
  } finally {
    t.cleanup();
  }
});

test('a first save whose background write fails (stubbed write: EIO) is reported, leaves nothing behind, and the next save writes the state at once with every save made meanwhile', async () => {
  const t = tempDir('meshid-first-save-eio-');
  const realOpen = fs.promises.open;
  try {
    const dir = path.join(t.dir, 'agent');
    const { log, records } = capturingLogger('meshid-agent');
    const store = AgentStore.open(dir, log);
    fs.promises.open = (async (...args: Parameters<typeof realOpen>) => {
      const handle = await realOpen(...args);
      if (String(args[0]).endsWith('.tmp')) handle.write = (() => Promise.reject(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }))) as typeof handle.write;
      return handle;
    }) as typeof realOpen;
    let state = firstState();
    assert.equal(saveChanges(store, state), false);
    const changed = oneEntryChanged(state, 2);
    state = changed.state;
    assert.equal(saveChanges(store, state, [changed.id]), false, 'pending meanwhile');
    await store.compactionSettled();
    fs.promises.open = realOpen;
    const line = records().find((r) => /cannot write the first agent state snapshot/.test(r.msg));
    assert.equal(line?.level, LEVEL.error);
    assert.match(String((line?.['err'] as { message?: string } | undefined)?.message), /EIO/);
    assert.equal(store.compacting(), false);
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n !== 'agent.lock'), [], 'no snapshot, temp file or journal is left');
    // The StateWriter saves again (the answer was pending): now at once, with everything.
    assert.equal(saveChanges(store, state), true);
    assert.equal(store.compacting(), false, 'written at once, not off the event loop again');
    store.close();
    assert.deepEqual(summary(load(dir)), summary(state));
  } finally {
    fs.promises.open = realOpen;
    t.cleanup();
  }
});

test('with a state.json on disk (a save after a failed directory fsync), the snapshot is still written at once: a withdrawal is saved before the save returns', () => {
  const t = tempDir('meshid-first-save-ondisk-');
  const real = fs.fsyncSync;
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    const s1 = firstState();
    store.saveState(s1);
    // Most SVIDs withdrawn (a snapshot written at once) whose directory fsync fails: no base to append to any more.
    fs.fsyncSync = (fd: number): void => {
      if (fs.fstatSync(fd).isDirectory()) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
      real(fd);
    };
    const s2 = { ...s1, revision: 2, svids: s1.svids.slice(0, 2) };
    assert.throws(() => saveChanges(store, s2, s1.svids.slice(2).map((s) => s.entryId)), /EIO/);
    fs.fsyncSync = real;
    // A withdrawal now: written at once, as the snapshot on disk (s2's) still grants it.
    const w = withdraw(store, s2, s2.svids[0]!.entryId);
    assert.equal(w.saved, true);
    assert.equal(store.compacting(), false);
    // What a kill now leaves.
    const copy = path.join(t.dir, 'kill');
    fs.cpSync(dir, copy, { recursive: true });
    fs.rmSync(path.join(copy, 'agent.lock'), { force: true });
    store.close();
    assert.deepEqual(summary(load(copy)), summary(w.state), 'on disk when the save returns');
  } finally {
    fs.fsyncSync = real;
    t.cleanup();
  }
});
