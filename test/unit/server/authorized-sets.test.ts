import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { AuthorizedSets } from '../../../src/server/entries/authorized-sets.js';
import { EntryIndex } from '../../../src/server/entries/entry-index.js';

const SERVER = 'spiffe://example.org/meshid/server';
const AGENT = 'spiffe://example.org/meshid/agent/east/a1';

function entry(id: string, spiffeId: string, parentId: string, selectors: string[], revision: number): RegistrationEntry {
  return {
    id, spiffeId, parentId, revision, createdAt: 0, updatedAt: 0,
    selectors: selectors.map((s) => ({ type: s.slice(0, s.indexOf(':')), value: s.slice(s.indexOf(':') + 1) })),
    x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], hint: '', federatesWith: [], admin: false, downstream: false,
  };
}

const agent = (selectors: string[]) => ({
  spiffeId: AGENT,
  selectors: selectors.map((s) => ({ type: s.slice(0, s.indexOf(':')), value: s.slice(s.indexOf(':') + 1) })),
});

test("an agent's set is computed once per index revision and selector set, and is gone once forgotten", () => {
  const index = new EntryIndex();
  index.load([
    entry('alias', 'spiffe://example.org/node/east', SERVER, ['meshid:datacenter:east'], 1),
    entry('web', 'spiffe://example.org/web', 'spiffe://example.org/node/east', ['unix:uid:1'], 1),
    entry('own', 'spiffe://example.org/own', AGENT, ['unix:uid:2'], 1),
  ], 1);
  const sets = new AuthorizedSets(index, SERVER);
  const east = agent(['meshid:datacenter:east']);
  const first = sets.of(east);
  assert.deepEqual([...first.keys()].sort(), ['own', 'web']);
  assert.equal(sets.of(east), first, 'kept while nothing changed');
  assert.deepEqual([...sets.of(agent(['meshid:datacenter:west'])).keys()], ['own'], 'other selectors: computed again');

  index.apply([entry('api', 'spiffe://example.org/api', AGENT, ['unix:uid:3'], 2)], [], 2);
  assert.deepEqual([...sets.of(east).keys()].sort(), ['api', 'own', 'web'], 'a new index revision: computed again');
  assert.equal(sets.size, 1);
  const current = sets.of(east);
  sets.forget(AGENT);
  assert.equal(sets.size, 0, 'an agent with no stream left holds nothing');
  assert.notEqual(sets.of(east), current, 'computed again after forget, nothing else having changed');
});
