/**
 * AgentStore.stateWrittenAt: when the state was last written, snapshot or journal, whichever is newer. A trust bundle
 * file older than that is not trusted beside the stored state (agent.ts): it could bring back a root the agent has
 * since seen revoked, in a change set saved after the snapshot.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
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

test('the state was written when its newest file was: a journal batch after an old snapshot counts, whichever order the files are listed in', () => {
  const t = tempDir('meshid-written-at-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    assert.equal(store.stateWrittenAt(), undefined, 'no state yet');
    const a = entry('written-at', ['unix:uid:1']);
    const state: StoredState = { trustDomain: 'example.org', revision: 1, bundle: fx.bundle(), federatedBundles: [], entries: [a], svids: [fx.issue(a)] };
    store.saveState(state);
    store.saveState({ ...state, revision: 2 });
    const journal = fs.readdirSync(dir).find((n) => /^state\.\d+\.journal$/.test(n))!;
    const day = 86_400;
    const now = Math.floor(Date.now() / 1000);
    // The snapshot a day old, the journal an hour old; then the other way round.
    fs.utimesSync(path.join(dir, 'state.json'), now - day, now - day);
    fs.utimesSync(path.join(dir, journal), now - 3600, now - 3600);
    assert.equal(store.stateWrittenAt(), (now - 3600) * 1000);
    fs.utimesSync(path.join(dir, 'state.json'), now - 60, now - 60);
    assert.equal(store.stateWrittenAt(), (now - 60) * 1000);
    store.close();
  } finally {
    t.cleanup();
  }
});
