import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closestMatch, editDistance } from '../../../src/common/cli/suggest.js';

test('edit distance counts insertions, deletions, substitutions and adjacent swaps as one edit each', () => {
  assert.equal(editDistance('selector', 'selector'), 0);
  assert.equal(editDistance('selectr', 'selector'), 1);
  assert.equal(editDistance('selectorr', 'selector'), 1);
  assert.equal(editDistance('selextor', 'selector'), 1);
  assert.equal(editDistance('sleector', 'selector'), 1);
  assert.equal(editDistance('', 'abc'), 3);
});

test('the closest candidate wins, compared case-insensitively', () => {
  assert.equal(closestMatch('crate', ['create', 'show', 'update', 'delete']), 'create');
  assert.equal(closestMatch('spiffeid', ['spiffeID', 'parentID']), 'spiffeID');
});

test('nothing is suggested when no candidate is plausibly a typo', () => {
  assert.equal(closestMatch('frobnicate', ['create', 'show', 'update', 'delete']), undefined);
  assert.equal(closestMatch('x', []), undefined);
});
