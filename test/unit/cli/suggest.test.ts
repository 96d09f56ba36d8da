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

test('a short word is taken for a typo of a candidate one edit away, never two: no "sds" for "db", "id", "cas" or "tls"', () => {
  const agentKeys = ['server_address', 'trust_domain', 'join_token', 'socket_path', 'data_dir', 'log_level', 'sds', 'health_checks'];
  for (const word of ['db', 'id', 'cas', 'tls', 'ab']) assert.equal(closestMatch(word, agentKeys), undefined, word);
  assert.equal(closestMatch('ds', agentKeys), 'sds');
  assert.equal(closestMatch('sdx', agentKeys), 'sds');
  assert.equal(closestMatch('sho', ['create', 'show', 'update', 'delete']), 'show');
  assert.equal(closestMatch('shwo', ['create', 'show', 'update', 'delete']), 'show');
  // Five letters and more keep two edits.
  assert.equal(closestMatch('crat', ['create', 'show']), undefined);
  assert.equal(closestMatch('craete', ['create', 'show']), 'create');
  assert.equal(closestMatch('updte', ['create', 'show', 'update']), 'update');
});
