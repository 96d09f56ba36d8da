import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { EntryIndex } from '../../../src/server/entries/entry-index.js';
import { entry } from '../datastore/fixture.js';

const stored = (id: string, spiffeId: string, parentId = 'spiffe://example.org/node'): RegistrationEntry => ({
  ...entry({ spiffeId: `spiffe://example.org/${spiffeId}`, parentId }),
  id,
  revision: 1,
  createdAt: 0,
  updatedAt: 0,
});
const ids = (index: EntryIndex, spiffeId: string): string[] => [...(index.idsWithSpiffeId(`spiffe://example.org/${spiffeId}`) ?? [])].sort();

test('the entry index finds entries by SPIFFE ID whether one or several have it, through loads, updates and deletes', () => {
  const index = new EntryIndex();
  index.load([stored('e-1', 'web'), stored('e-2', 'db'), stored('e-3', 'db')], 5);
  assert.deepEqual([ids(index, 'web'), ids(index, 'db'), ids(index, 'none')], [['e-1'], ['e-2', 'e-3'], []]);
  assert.equal(index.idsWithSpiffeId('spiffe://example.org/none'), undefined);

  // e-3 moves to web: each SPIFFE ID goes from one entry to two or back.
  index.apply([stored('e-3', 'web')], [], 6);
  assert.deepEqual([ids(index, 'web'), ids(index, 'db')], [['e-1', 'e-3'], ['e-2']]);
  index.apply([], ['e-1', 'e-2'], 7);
  assert.deepEqual([ids(index, 'web'), ids(index, 'db')], [['e-3'], []]);
  assert.equal(index.idsWithSpiffeId('spiffe://example.org/db'), undefined, 'a SPIFFE ID no entry has any more is forgotten');
  index.apply([stored('e-4', 'web')], [], 8);
  index.apply([], ['e-3'], 9);
  assert.deepEqual(ids(index, 'web'), ['e-4']);

  // A load replaces everything; an ID listed twice keeps its last copy, under its last parent only.
  index.load([stored('e-5', 'api', 'spiffe://example.org/a'), stored('e-5', 'api2', 'spiffe://example.org/b')], 10);
  assert.deepEqual([ids(index, 'web'), ids(index, 'api'), ids(index, 'api2')], [[], [], ['e-5']]);
  assert.deepEqual(index.childrenOf('spiffe://example.org/a'), []);
  assert.deepEqual(index.childrenOf('spiffe://example.org/b').map((e) => e.id), ['e-5']);
  assert.equal(index.size, 1);
});
