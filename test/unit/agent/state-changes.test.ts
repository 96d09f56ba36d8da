/**
 * The change set a save appends (state-changes.ts) when what changed is only the bundles: a root rotation or a
 * federation ended changes no entry and no revision, and must still reach the data dir, or a restart serves the old
 * trust.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AgentStore } from '../../../src/agent/storage/agent-store.js';
import type { StoredState } from '../../../src/agent/storage/stored-state.js';
import { silentLogger } from '../../../src/common/log.js';
import { tempDir } from '../../support/server-kit.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
let other: AgentFixture;
before(async () => {
  fx = await openAgentFixture();
  other = await openAgentFixture();
});
after(async () => {
  await fx.close();
  await other.close();
});

/** Saves `first`, then each of `later` (a journal batch each), and returns what a restart reads. */
function savedThenRestarted(first: StoredState, ...later: StoredState[]): StoredState | undefined {
  const t = tempDir('meshid-changes-');
  try {
    const dir = path.join(t.dir, 'agent');
    const store = AgentStore.open(dir, silentLogger());
    store.saveState(first);
    for (const s of later) store.saveState(s);
    store.close();
    const reopened = AgentStore.open(dir, silentLogger());
    try {
      return reopened.loadState(fx.clock.now());
    } finally {
      reopened.close();
    }
  } finally {
    t.cleanup();
  }
}

function baseState(): StoredState {
  const a = entry('changes-a', ['unix:uid:1'], { federates_with: ['partner.org', 'other.org'] });
  const own = fx.bundle();
  return {
    trustDomain: 'example.org',
    revision: 7,
    bundle: own,
    federatedBundles: [
      { ...other.bundle(), trustDomain: 'partner.org', jwtAuthorities: [] },
      { ...other.bundle(), trustDomain: 'other.org', jwtAuthorities: [] },
    ],
    entries: [a],
    svids: [fx.issue(a)],
  };
}

test('a save whose only change is the own bundle (a new root published; no entry, no revision changed) is on disk after a restart', () => {
  const base = baseState();
  const rotated = { ...base.bundle, sequence: base.bundle.sequence + 1, x509Authorities: [...base.bundle.x509Authorities, ...other.bundle().x509Authorities] };
  const back = savedThenRestarted(base, { ...base, bundle: rotated });
  assert.equal(back?.bundle.sequence, rotated.sequence);
  assert.deepEqual(back?.bundle.x509Authorities, rotated.x509Authorities);
});

test('a save that ends the last federation of several (the others kept, in order) is on disk after a restart', () => {
  const base = baseState();
  const back = savedThenRestarted(base, { ...base, federatedBundles: base.federatedBundles.slice(0, 1) });
  assert.deepEqual(back?.federatedBundles.map((b) => b.trustDomain), ['partner.org']);
  const all = savedThenRestarted(base, { ...base, federatedBundles: [] });
  assert.deepEqual(all?.federatedBundles, []);
});
