import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { SvidIssuer } from '../../../src/agent/cache/svid-issuer.js';
import { applySyncUpdate } from '../../../src/agent/client/sync-apply.js';
import { silentLogger } from '../../../src/common/log.js';
import { entry, openAgentFixture, type AgentFixture } from './agent-fixture.js';

let fx: AgentFixture;
before(async () => (fx = await openAgentFixture()));
after(async () => fx.close());

const uid7 = [{ type: 'unix', value: 'uid:7' }];

test('a new version of a held entry that the agent cannot use withdraws the entry instead of leaving the old version served', () => {
  const cache = fx.cache();
  const issuer = new SvidIssuer({ cache, sign: fx.signer(cache).sign, clock: fx.clock, log: silentLogger() });
  const held = entry('narrowed', ['unix:uid:7']);
  cache.apply({ upserts: [held] });
  cache.putSvids([fx.issue(held)]);
  assert.equal(cache.snapshot(uid7).svids.length, 1);

  // The server's next version of the entry, as this agent reads it: unusable (here, a selector with no value).
  const next = { ...entryToMessage(held), revision: held.revision + 1, selectors: [{ type: 'unix', value: 'uid:7' }, { type: 'unix', value: '' }] };
  const applied = applySyncUpdate({ revision: 2, initial: false, entries: [next], removed_entry_ids: [] }, { cache, issuer, log: silentLogger(), trustDomain: 'example.org' });
  issuer.stop();

  assert.equal(cache.entry(held.id), undefined, 'the old version is not kept');
  assert.equal(cache.snapshot(uid7).entitled, false, 'nothing of it is served');
  assert.equal(applied.removed, 1);
  assert.equal(applied.withdraws, true);
  assert.deepEqual(applied.withdrawnEntryIds, [held.id], 'the save before workloads hear of it writes this entry');
});
