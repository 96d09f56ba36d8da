import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { AuthorizedSets } from '../../../src/server/entries/authorized-sets.js';
import { authorizedEntries } from '../../../src/server/entries/authorized-entries.js';
import { EntryIndex } from '../../../src/server/entries/entry-index.js';
import { seededRandom } from '../../support/seeded-random.js';

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

test("a change under another agent keeps an agent's set, the same map, so its Sync stream has nothing to compare", () => {
  const other = 'spiffe://example.org/meshid/agent/east/a2';
  const index = new EntryIndex();
  index.load([
    entry('alias', 'spiffe://example.org/node/east', SERVER, ['meshid:datacenter:east'], 1),
    entry('web', 'spiffe://example.org/web', 'spiffe://example.org/node/east', ['unix:uid:1'], 1),
    entry('theirs', 'spiffe://example.org/theirs', other, ['unix:uid:2'], 1),
  ], 1);
  const sets = new AuthorizedSets(index, SERVER);
  const east = agent(['meshid:datacenter:east']);
  const first = sets.of(east);
  index.apply([entry('theirs2', 'spiffe://example.org/theirs2', other, ['unix:uid:3'], 2)], [], 2);
  index.apply([entry('deep', 'spiffe://example.org/deep', 'spiffe://example.org/theirs', ['unix:uid:4'], 3)], ['theirs2'], 3);
  assert.equal(sets.of(east), first, 'kept: nothing it reaches changed');

  index.apply([entry('deeper', 'spiffe://example.org/deeper', 'spiffe://example.org/web', ['unix:uid:5'], 4)], [], 4);
  assert.deepEqual([...sets.of(east).keys()].sort(), ['deeper', 'web'], 'an entry under one it holds: computed again');
});

/**
 * Random trees of entries under two agents, node aliases and each other (SPIFFE IDs reused, cycles, reparenting, alias
 * selectors changing), changed a few entries at a time: the kept set must always be what a fresh walk finds.
 */
test("an agent's kept set always equals a fresh walk of the index, whatever the changes", () => {
  const random = seededRandom(20261202);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const other = 'spiffe://example.org/meshid/agent/east/a2';
  const ids = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/w${i}`);
  const parents = [AGENT, other, SERVER, ...ids];
  const selectorsOf = ['meshid:datacenter:east', 'meshid:datacenter:west', 'unix:uid:1'];
  const make = (id: string, revision: number): RegistrationEntry => {
    const parentId = pick(parents);
    const spiffeId = parentId === SERVER ? pick(ids.slice(0, 4)) : pick(ids);
    return entry(id, spiffeId, parentId, [pick(selectorsOf)], revision);
  };
  for (let round = 0; round < 40; round++) {
    let revision = 1;
    const index = new EntryIndex();
    let live = Array.from({ length: 10 }, (_, i) => `e${i}`);
    index.load(live.map((id) => make(id, revision)), revision);
    let next = live.length;
    const sets = new AuthorizedSets(index, SERVER);
    const agents = [agent(['meshid:datacenter:east']), { ...agent(['meshid:datacenter:west']), spiffeId: other }];
    for (let step = 0; step < 30; step++) {
      revision++;
      const upserts: RegistrationEntry[] = [];
      const deleted: string[] = [];
      for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
        const r = random();
        if (r < 0.3 && live.length > 0) deleted.push(pick(live));
        else upserts.push(make(r < 0.7 ? `e${next++}` : pick(live.length > 0 ? live : ['e0']), revision));
      }
      const upserted = upserts.map((e) => e.id);
      const gone = deleted.filter((id) => !upserted.includes(id));
      index.apply(upserts.filter((e) => !gone.includes(e.id)), gone, revision);
      live = [...new Set([...live.filter((id) => !gone.includes(id)), ...upserted.filter((id) => !gone.includes(id))])];
      for (const a of agents) {
        if (random() < 0.3) continue; // some agents skip a change, as a stream that is not reading does
        const kept = [...sets.of(a).values()].map((e) => `${e.id}@${e.revision}`).sort();
        const fresh = [...authorizedEntries(index, a, SERVER).values()].map((e) => `${e.id}@${e.revision}`).sort();
        assert.deepEqual(kept, fresh, `round ${round}, step ${step}, agent ${a.spiffeId}`);
      }
    }
  }
});
