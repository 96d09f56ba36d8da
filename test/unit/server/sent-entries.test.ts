import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { SentEntries } from '../../../src/server/api/sent-entries.js';

function entry(id: string, revision: number): RegistrationEntry {
  return {
    id, spiffeId: `spiffe://example.org/${id}`, parentId: 'spiffe://example.org/node/east', revision, createdAt: 0, updatedAt: 0,
    selectors: [], x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], hint: '', federatesWith: [], admin: false, downstream: false,
  };
}
const set = (...entries: RegistrationEntry[]) => new Map(entries.map((e) => [e.id, e]));
const ids = (d: { upserts: RegistrationEntry[]; removed: string[] }) => ({ upserts: d.upserts.map((e) => e.id), removed: d.removed });

test("a reconnecting agent is sent only what differs from its known list, and the request lets go of that list", () => {
  const request = { known: [{ id: 'same', revision: 3 }, { id: 'older', revision: 1 }, { id: 'gone', revision: 2 }, { revision: 9 }] };
  const sent = new SentEntries(request);
  assert.equal(request.known, undefined, 'a stream must not keep its request\'s known list (up to 4 MB) for its life');
  assert.deepEqual(ids(sent.update(set(entry('same', 3), entry('older', 2), entry('new', 1)))), { upserts: ['older', 'new'], removed: ['gone'] });
});

test('after an update the agent holds exactly that set: the same set again sends nothing, a changed one only its changes', () => {
  const sent = new SentEntries({});
  const first = set(entry('a', 1), entry('b', 1));
  assert.deepEqual(ids(sent.update(first)), { upserts: ['a', 'b'], removed: [] });
  assert.deepEqual(ids(sent.update(first)), { upserts: [], removed: [] });
  assert.deepEqual(ids(sent.update(set(entry('a', 2), entry('c', 1)))), { upserts: ['a', 'c'], removed: ['b'] });
  assert.deepEqual(ids(sent.update(new Map())), { upserts: [], removed: ['a', 'c'] });
});

test('the set passed in is not modified (it is the one AuthorizedSets shares with signing checks)', () => {
  const sent = new SentEntries({ known: [{ id: 'x', revision: 1 }] });
  const authorized = set(entry('a', 1));
  sent.update(authorized);
  sent.update(set(entry('b', 1)));
  assert.deepEqual([...authorized.keys()], ['a']);
});
