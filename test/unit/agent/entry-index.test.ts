import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntryIndex, entryMatches, selectorSet, workloadKey } from '../../../src/agent/cache/entry-index.js';
import { entryFromMessage, entryToMessage } from '../../../src/agent/cache/agent-entry.js';
import { entry } from './agent-fixture.js';

const workload = (...s: string[]) => selectorSet(s.map((x) => ({ type: x.slice(0, x.indexOf(':')), value: x.slice(x.indexOf(':') + 1) })));

test('an entry matches only when every one of its selectors is among the workload selectors', () => {
  const e = entry('web', ['unix:uid:1000', 'unix:gid:50']);
  assert.equal(entryMatches(e, workload('unix:uid:1000', 'unix:gid:50', 'unix:user:web')), true, 'a superset matches');
  assert.equal(entryMatches(e, workload('unix:uid:1000')), false, 'a subset does not');
  assert.equal(entryMatches(e, workload('unix:uid:1000', 'unix:gid:51')), false);
  assert.equal(entryMatches(e, workload()), false);
});

test('matching returns the oldest entry first (createdAt, then id), whatever the insertion order', () => {
  const index = new EntryIndex();
  const newer = entry('b', ['unix:uid:1'], { created_at: 2000 });
  const older = entry('a', ['unix:uid:1', 'unix:gid:1'], { created_at: 1000 });
  const tieZ = entry('z', ['unix:gid:1'], { id: 'zz', created_at: 1500 });
  const tieA = entry('y', ['unix:gid:1'], { id: 'aa', created_at: 1500 });
  for (const e of [newer, tieZ, older, tieA]) index.upsert(e);
  assert.deepEqual(index.matching(workload('unix:uid:1', 'unix:gid:1')).map((e) => e.id), [older.id, 'aa', 'zz', newer.id]);
  assert.deepEqual(index.matching(workload('unix:uid:1')).map((e) => e.id), [newer.id]);
});

test('replacing or removing an entry updates what its old selectors match', () => {
  const index = new EntryIndex();
  const e = entry('svc', ['unix:uid:1']);
  index.upsert(e);
  const moved = entryFromMessage({ id: e.id, spiffe_id: e.spiffeId, selectors: [{ type: 'unix', value: 'uid:2' }], revision: e.revision + 1 });
  assert.equal(index.upsert(moved), e, 'returns the replaced entry');
  assert.deepEqual(index.matching(workload('unix:uid:1')), []);
  assert.deepEqual(index.matching(workload('unix:uid:2')).map((x) => x.id), [e.id]);
  assert.equal(index.remove(e.id), moved);
  assert.deepEqual(index.matching(workload('unix:uid:2')), []);
  assert.equal(index.size, 0);
});

test('entries the agent could not serve correctly are refused when received', () => {
  assert.throws(() => entryFromMessage({ id: 'x', spiffe_id: 'spiffe://example.org', selectors: [{ type: 'unix', value: 'uid:1' }] }), /no path/);
  assert.throws(() => entryFromMessage({ id: 'x', spiffe_id: 'spiffe://example.org/a', selectors: [] }), /no selectors/);
  assert.throws(() => entryFromMessage({ spiffe_id: 'spiffe://example.org/a', selectors: [{ type: 'unix', value: 'uid:1' }] }), /without an id/);
  const e = entryFromMessage({ id: 'x', spiffe_id: 'spiffe://example.org/a', selectors: [{ type: 'unix', value: 'uid:1' }], federates_with: ['spiffe://other.org', 'third.org'], created_at: 5 });
  assert.deepEqual(e.federatesWith, ['other.org', 'third.org'], 'federation targets become bare trust domain names');
  assert.equal(e.createdAt, 5000, 'from a server (or a stored state) that sends seconds only');
  assert.equal(e.createdAtExact, false);
  assert.equal(entryToMessage(e).created_at_ms, undefined, 'not stored as if it were exact');
  const precise = entryFromMessage({ id: 'y', spiffe_id: 'spiffe://example.org/a', selectors: [{ type: 'unix', value: 'uid:1' }], created_at: 5, created_at_ms: 5_999 });
  assert.equal(precise.createdAt, 5_999, 'milliseconds order two entries of the same second');
  assert.equal(precise.createdAtExact, true);
  assert.equal(entryFromMessage(entryToMessage(precise)).createdAt, 5_999, 'and survive the agent\'s own store');
});

test('workloadKey is equal for the same selectors in any order and differs for another set', () => {
  const a = [{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: 'gid:2' }];
  const b = [{ type: 'unix', value: 'gid:2' }, { type: 'unix', value: 'uid:1' }];
  assert.equal(workloadKey(a), workloadKey(b));
  assert.equal(workloadKey(a), workloadKey(a));
  assert.notEqual(workloadKey(a), workloadKey([{ type: 'unix', value: 'uid:1' }]));
  assert.notEqual(workloadKey([{ type: 'unix', value: 'uid:12' }]), workloadKey([{ type: 'unix', value: 'uid:1' }, { type: 'unix', value: '2' }]));
});

test('selectorSet is kept per frozen array only: a caller that changes its own array never sees a stale set', () => {
  const frozen = Object.freeze([Object.freeze({ type: 'unix', value: 'uid:1' })]);
  assert.equal(selectorSet(frozen), selectorSet(frozen));
  const mutable = [{ type: 'unix', value: 'uid:1' }];
  assert.deepEqual([...selectorSet(mutable)], ['unix:uid:1']);
  mutable.push({ type: 'unix', value: 'gid:2' });
  assert.deepEqual([...selectorSet(mutable)], ['unix:uid:1', 'unix:gid:2']);
});
