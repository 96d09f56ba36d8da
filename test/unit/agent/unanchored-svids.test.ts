/**
 * unanchoredSvids on its own: which held SVIDs a bundle change has cut off from their root. The check is made once per
 * intermediate and its answer shared by the SVIDs under it, so the answer shared must be the one found.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unanchoredSvids } from '../../../src/agent/cache/unanchored-svids.js';
import { entry, openAgentFixture } from './agent-fixture.js';

test('every SVID under an intermediate that no longer chains to the bundle is unanchored, not only the first one checked', async (t) => {
  const old = await openAgentFixture();
  t.after(() => old.close());
  const current = await openAgentFixture();
  t.after(() => current.close());
  const a = old.issue(entry('unanchored/a', ['unix:uid:1000']));
  const kept = current.issue(entry('unanchored/kept', ['unix:uid:1000']));
  const b = old.issue(entry('unanchored/b', ['unix:uid:1001']));
  const c = old.issue(entry('unanchored/c', ['unix:uid:1002']));
  assert.equal(a.chain[1], b.chain[1], 'the SVIDs of one CA share its intermediate, as the agent keeps them');
  const now = old.clock.now();

  const cut = unanchoredSvids([a, kept, b, c], current.bundle().x509Authorities, now);
  assert.deepEqual(cut.map((s) => s.entryId), [a.entryId, b.entryId, c.entryId]);

  assert.deepEqual(unanchoredSvids([a, kept, b, c], [...old.bundle().x509Authorities, ...current.bundle().x509Authorities], now), []);
  assert.deepEqual(unanchoredSvids([kept, a, b], old.bundle().x509Authorities, now).map((s) => s.entryId), [kept.entryId]);
});
