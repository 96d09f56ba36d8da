/**
 * A save that creates a new journal file and whose directory fsync fails (an EIO the disk reports then): the file's
 * name is not durable, and a power cut could lose it with every batch appended since. The save fails, and the next
 * save must make the name durable before it appends. A directory fsync cannot be made to fail for real here, so
 * fs.fsyncSync is stubbed: to fail on directories (files are fsynced for real), then to count them.
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

/** Runs `fn` with fs.fsyncSync replaced for directories by `onDirectory` (files are fsynced for real). */
function withDirectoryFsync<T>(onDirectory: (fd: number, real: (fd: number) => void) => void, fn: () => T): T {
  const real = fs.fsyncSync;
  fs.fsyncSync = (fd: number): void => {
    if (fs.fstatSync(fd).isDirectory()) onDirectory(fd, real);
    else real(fd);
  };
  try {
    return fn();
  } finally {
    fs.fsyncSync = real;
  }
}

test('a new journal whose directory fsync failed (stubbed fsync: EIO on directories) has it retried by the next save before it appends', () => {
  const t = tempDir('meshid-journal-fsync-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const all = ['a', 'b', 'c'].map((id, i) => entry(`j-${id}`, [`unix:uid:${i + 1}`]));
    const [a, b, c] = all as [AgentEntry, AgentEntry, AgentEntry];
    // The first save writes a snapshot; the next ones append to a journal, created by the second.
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a], svids: [fx.issue(a)] };
    store.saveState(s1);
    const journals = (): string[] => fs.readdirSync(dir).filter((n) => n.includes('journal'));
    assert.deepEqual(journals(), [], 'no journal yet');
    const s2: StoredState = { ...s1, revision: 2, entries: [a, b], svids: [...s1.svids, fx.issue(b)] };
    assert.throws(
      () => withDirectoryFsync(() => { throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }); }, () => store.saveState(s2)),
      /EIO/,
    );
    assert.equal(journals().length, 1, 'the journal file was created');

    const s3: StoredState = { ...s2, revision: 3, entries: [a, b, c], svids: [...s2.svids, fx.issue(c)] };
    let directoryFsyncs = 0;
    withDirectoryFsync(
      (fd, real) => {
        directoryFsyncs++;
        real(fd);
      },
      () => store.saveState(s3),
    );
    assert.ok(directoryFsyncs >= 1, 'the next save made the journal\'s name durable');
    store.close();

    store = AgentStore.open(dir, silentLogger());
    const loaded = store.loadState(fx.clock.now());
    store.close();
    assert.deepEqual(loaded?.entries.map((x) => x.id).sort(), [a, b, c].map((x) => x.id).sort());
  } finally {
    t.cleanup();
  }
});
