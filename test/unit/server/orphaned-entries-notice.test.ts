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

test('the prune names the first 20 agents with orphaned entries one by one (sorted) and sums up the rest in one line', async () => {
  const { capturingLogger, LEVEL } = await import('../../support/log-lines.js');
  const { warnOfEntriesOrphanedByPrune } = await import('../../../src/server/entries/orphaned-entries.js');
  const agents = Array.from({ length: 22 }, (_, i) => `spiffe://example.org/meshid/agent/dc1/a${String(i).padStart(2, '0')}`);
  const entries = { listEntriesByParentIds: async (ids: readonly string[]) => ids.flatMap((id, i) => Array.from({ length: i + 1 }, () => ({ parentId: id }))) };
  const { log, records } = capturingLogger('meshid-server');
  await warnOfEntriesOrphanedByPrune([...agents].reverse(), entries, log);
  const warnings = records().filter((r) => r.level === LEVEL.warn);
  assert.deepEqual(warnings.slice(0, 20).map((w) => w['agent']), agents.slice(0, 20));
  assert.equal(warnings.length, 21);
  assert.deepEqual([warnings[20]!['agents'], warnings[20]!['entries']], [2, 1 + 2]);
  assert.match(warnings[20]!.msg, /^2 more pruned agents have 3 registration entries parented directly to them/);

  const none = capturingLogger('meshid-server');
  await warnOfEntriesOrphanedByPrune(agents.slice(0, 20), { listEntriesByParentIds: async (ids) => ids.map((parentId) => ({ parentId })) }, none.log);
  assert.equal(none.records().length, 20, 'exactly 20 agents: each named, no summary');

  const one = capturingLogger('meshid-server');
  await warnOfEntriesOrphanedByPrune([agents[0]!], entries, one.log);
  assert.deepEqual(one.records().map((r) => [r['agent'], r['entries']]), [[agents[0], 1]], 'a prune of one agent warns too');
});
