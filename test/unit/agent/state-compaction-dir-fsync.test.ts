/**
 * A compaction whose directory fsync fails after the new snapshot's rename (an EIO the disk reports then). The new
 * snapshot is in place and names a new journal generation; a persister that went on appending to the old generation's
 * journal wrote change sets no restart reads, a withdrawal among them. A directory fsync cannot be made to fail for
 * real here, so fs.fsyncSync is stubbed to fail on directories only (files are fsynced for real).
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

/** Runs `fn` with every fsync of a directory failing EIO. */
function withDirectoryFsyncFailing<T>(fn: () => T): T {
  const real = fs.fsyncSync;
  fs.fsyncSync = (fd: number): void => {
    if (fs.fstatSync(fd).isDirectory()) throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    real(fd);
  };
  try {
    return fn();
  } finally {
    fs.fsyncSync = real;
  }
}

test('after a compaction whose directory fsync failed (stubbed fsync: EIO on directories), a later withdrawal is saved where a restart reads it', () => {
  const t = tempDir('meshid-compaction-fsync-');
  try {
    const dir = path.join(t.dir, 'agent');
    let store = AgentStore.open(dir, silentLogger());
    const all = ['a', 'b', 'c', 'd', 'e'].map((id, i) => entry(`f-${id}`, [`unix:uid:${i + 1}`]));
    const [a, b, c, d, e] = all as [AgentEntry, AgentEntry, AgentEntry, AgentEntry, AgentEntry];
    const s1: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: all, svids: all.map((x) => fx.issue(x)) };
    store.saveState(s1);
    // Most SVIDs withdrawn: saved as a new snapshot at once (their keys off the disk), whose directory fsync fails.
    const s2: StoredState = { ...s1, revision: 2, entries: [a, b], svids: s1.svids.slice(0, 2) };
    assert.throws(() => withDirectoryFsyncFailing(() => store.saveState(s2)), /EIO/);
    // Then c, d and e are back with new SVIDs, and a is withdrawn.
    const again = [c, d, e].map((x) => fx.issue(x));
    const s3: StoredState = { ...s1, revision: 3, entries: [b, c, d, e], svids: [s1.svids[1]!, ...again] };
    store.saveState(s3);
    store.close();

    store = AgentStore.open(dir, silentLogger());
    const loaded = store.loadState(fx.clock.now());
    store.close();
    assert.deepEqual(
      loaded?.entries.map((x) => x.id).sort(),
      [b, c, d, e].map((x) => x.id).sort(),
      'the withdrawn f-a is not restored, and the entries saved after the failed fsync are',
    );
    assert.ok(!loaded!.svids.some((s) => s.entryId === a.id), 'nor its SVID');
  } finally {
    t.cleanup();
  }
});
