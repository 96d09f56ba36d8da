/** The notice `agent evict`, `agent ban` and the prune give about entries parented to the departed agent: its grammar. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { orphanedEntriesNotice } from '../../../src/server/entries/orphaned-entries.js';

const AGENT = 'spiffe://example.org/meshid/agent/dc1/a1';

test('one entry is spoken of in the singular, several in the plural, for each way an agent departs', () => {
  assert.match(orphanedEntriesNotice(AGENT, 1, 'evicted'), /^1 registration entry is parented directly to \S+, and matches no agent from now on: /);
  assert.match(orphanedEntriesNotice(AGENT, 2, 'evicted'), /^2 registration entries are parented directly to \S+, and match no agent from now on: /);
  assert.match(orphanedEntriesNotice(AGENT, 1, 'banned'), /, and no agent gets it while the agent is banned: /);
  assert.match(orphanedEntriesNotice(AGENT, 3, 'banned'), /, and no agent gets them while the agent is banned: /);
  assert.match(orphanedEntriesNotice(AGENT, 1, 'pruned'), /, and matches no agent now that the agent was removed/);
  assert.match(orphanedEntriesNotice(AGENT, 4, 'pruned'), /, and match no agent now that the agent was removed/);
});
