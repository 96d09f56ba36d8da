/** AuthorizedSet.changedSince: which held set a new set may be compared with by its changed IDs alone. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthorizedSet } from '../../../src/server/entries/authorized-set.js';
import type { Subtree } from '../../../src/server/entries/subtrees.js';

const ROOT = 'spiffe://example.org/node/east';

function subtree(previous: Subtree | undefined, changed: readonly string[] | undefined, root = ROOT): Subtree {
  return { root, generation: 0, entries: new Map(), previous, changed };
}

test('a set names its changes only against the set it follows: a stream holding an older one compares everything', () => {
  const s1 = subtree(undefined, undefined);
  const s2 = subtree(s1, ['x']);
  const s3 = subtree(s2, ['y']);
  const a = new AuthorizedSet([s1]);
  const b = new AuthorizedSet([s2], a);
  assert.deepEqual(b.changedSince(a), ['x']);
  const c = new AuthorizedSet([s3], b);
  assert.deepEqual(c.changedSince(b), ['y']);
  // A stream two changes behind would miss x if told only y.
  assert.equal(c.changedSince(a), undefined);
  assert.equal(c.changedSince(new Map()), undefined);
  assert.equal(b.changedSince(a), undefined, 'one step back only: b no longer names its changes');
});

test('a subtree that replaced the one held without naming its changes makes the set unknown (compare everything)', () => {
  const s1 = subtree(undefined, undefined);
  const a = new AuthorizedSet([s1]);
  const b = new AuthorizedSet([subtree(s1, undefined)], a);
  assert.equal(b.changedSince(a), undefined);
  // Another number of roots, or a subtree more than one change past the one held: unknown too.
  assert.equal(new AuthorizedSet([subtree(s1, ['x']), subtree(undefined, undefined, 'spiffe://example.org/a')], a).changedSince(a), undefined);
  assert.equal(new AuthorizedSet([subtree(subtree(s1, ['x']), ['y'])], a).changedSince(a), undefined);
});
