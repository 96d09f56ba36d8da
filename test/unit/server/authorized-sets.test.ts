import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RegistrationEntry } from '../../../src/server/datastore/datastore.js';
import { SentEntries } from '../../../src/server/api/sent-entries.js';
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

test("an entry change under a node alias all agents match walks the alias's entries once, and each agent's stream compares only the change", () => {
  const alias = 'spiffe://example.org/node/east';
  const shared = Array.from({ length: 200 }, (_, i) => entry(`s${i}`, `spiffe://example.org/s${i}`, alias, ['unix:uid:1'], 1));
  const agentIds = Array.from({ length: 20 }, (_, i) => `spiffe://example.org/meshid/agent/east/n${i}`);
  const own = agentIds.map((id, i) => entry(`own${i}`, `spiffe://example.org/own${i}`, id, ['unix:uid:2'], 1));
  let walked = 0;
  const index = new (class extends EntryIndex {
    override childrenOf(parentId: string): RegistrationEntry[] {
      walked++;
      return super.childrenOf(parentId);
    }
  })();
  index.load([entry('alias', alias, SERVER, ['meshid:datacenter:east'], 1), ...shared, ...own], 1);
  const sets = new AuthorizedSets(index, SERVER);
  const agents = agentIds.map((spiffeId) => ({ ...agent(['meshid:datacenter:east']), spiffeId }));
  const streams = agents.map(() => new SentEntries({}));
  agents.forEach((a, i) => assert.equal(streams[i]!.update(sets.of(a)).upserts.length, 201));

  index.apply([{ ...shared[7]!, revision: 2 }, entry('new', 'spiffe://example.org/new', alias, ['unix:uid:3'], 2)], ['s9'], 2);
  walked = 0;
  const now = agents.map((a) => sets.of(a));
  assert.ok(walked < 2 * shared.length, `${walked} parents looked up: the alias's subtree was walked once per agent`);
  // Every entry comparison reads a map; counted while the streams take the change.
  const get = Map.prototype.get;
  let reads = 0;
  Map.prototype.get = function (this: Map<unknown, unknown>, k: unknown) {
    reads++;
    return get.call(this, k);
  };
  let diffs;
  try {
    diffs = streams.map((s, i) => s.update(now[i]!));
  } finally {
    Map.prototype.get = get;
  }
  for (const d of diffs) assert.deepEqual({ upserts: d.upserts.map((e) => e.id).sort(), removed: d.removed }, { upserts: ['new', 's7'], removed: ['s9'] });
  assert.ok(reads < 50 * agents.length, `${reads} map reads: each stream compared its whole set, not the change`);
});

/**
 * Random trees of entries under several agents, node aliases and each other (SPIFFE IDs reused, cycles, reparenting,
 * deletes, alias selectors changing, agents' own selectors changing, several agents matching the same aliases and so
 * sharing their subtrees, now and then a reload of the whole index), changed a few entries at a time: the kept set must
 * always be what a fresh walk finds, and what each agent's Sync stream sends (SentEntries, which compares only what a
 * set says may have changed) exactly what a full compare of the fresh walk against what it was sent last would send.
 */
test("an agent's kept set always equals a fresh walk, and its stream sends what a full compare sends, whatever the changes", () => {
  const random = seededRandom(20261202);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const agentIds = [AGENT, ...[2, 3, 4, 5].map((n) => `spiffe://example.org/meshid/agent/east/a${n}`)];
  const ids = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/w${i}`);
  const parents = [...agentIds, SERVER, SERVER, ...ids];
  const selectorsOf = ['meshid:datacenter:east', 'meshid:datacenter:west', 'unix:uid:1'];
  const make = (id: string, revision: number): RegistrationEntry => {
    const parentId = pick(parents);
    const spiffeId = parentId === SERVER ? pick(ids.slice(0, 4)) : random() < 0.1 ? pick(agentIds) : pick(ids);
    return entry(id, spiffeId, parentId, [pick(selectorsOf)], revision);
  };
  const agentSelectors = (): string[] => selectorsOf.filter(() => random() < 0.6);
  const key = (entries: Iterable<RegistrationEntry>) => [...entries].map((e) => `${e.id}@${e.revision}`).sort();
  let incremental = 0;
  for (let round = 0; round < 60; round++) {
    let revision = 1;
    const index = new EntryIndex();
    let live = Array.from({ length: 12 }, (_, i) => `e${i}`);
    index.load(live.map((id) => make(id, revision)), revision);
    let next = live.length;
    const sets = new AuthorizedSets(index, SERVER);
    const agents = agentIds.map((spiffeId) => ({
      ...agent(agentSelectors()),
      spiffeId,
      stream: new SentEntries({}),
      // What a full compare takes the agent to hold: the last fresh walk it was sent.
      sent: new Map<string, number>(),
      last: undefined as ReadonlyMap<string, unknown> | undefined,
    }));
    for (let step = 0; step < 40; step++) {
      revision++;
      if (random() < 0.03) {
        index.load([...index.entries()].map((e) => (random() < 0.3 ? { ...e, revision } : e)), revision);
      } else {
        const upserts: RegistrationEntry[] = [];
        const deleted: string[] = [];
        for (let k = 1 + Math.floor(random() * 3); k > 0; k--) {
          const r = random();
          if (r < 0.3 && live.length > 0) deleted.push(pick(live));
          else upserts.push(make(r < 0.6 ? `e${next++}` : pick(live.length > 0 ? live : ['e0']), revision));
        }
        const upserted = upserts.map((e) => e.id);
        const gone = deleted.filter((id) => !upserted.includes(id));
        index.apply(upserts.filter((e) => !gone.includes(e.id)), gone, revision);
        live = [...new Set([...live.filter((id) => !gone.includes(id)), ...upserted.filter((id) => !gone.includes(id))])];
      }
      for (const a of agents) {
        if (random() < 0.05) a.selectors = agent(agentSelectors()).selectors;
        if (random() < 0.25) continue; // some agents skip a change, as a stream that is not reading does
        const where = `round ${round}, step ${step}, agent ${a.spiffeId}`;
        const kept = sets.of(a);
        const fresh = authorizedEntries(index, a, SERVER);
        assert.deepEqual(key(kept.values()), key(fresh.values()), where);
        assert.equal(kept.size, fresh.size, where);
        for (const id of live) assert.equal(kept.get(id), fresh.get(id), `${where}, get ${id}`);
        if (a.last !== undefined && kept !== a.last && kept.changedSince(a.last) !== undefined) incremental++;
        a.last = kept;
        const { upserts, removed } = a.stream.update(kept);
        const expectedUpserts = [...fresh.values()].filter((e) => a.sent.get(e.id) !== e.revision);
        const expectedRemoved = [...a.sent.keys()].filter((id) => !fresh.has(id));
        assert.deepEqual(key(upserts), key(expectedUpserts), `${where}: upserts`);
        assert.deepEqual([...removed].sort(), expectedRemoved.sort(), `${where}: removals`);
        a.sent = new Map([...fresh.values()].map((e) => [e.id, e.revision]));
      }
    }
  }
  assert.ok(incremental > 500, `the streams compared only the changed IDs ${incremental} times: too few to test that`);
});

test('a node alias needs every one of its selectors among the agent\'s: one of two is not enough', () => {
  const alias = 'spiffe://example.org/node/east-db';
  const index = new EntryIndex();
  index.load([
    entry('alias', alias, SERVER, ['meshid:datacenter:east', 'token:role:db'], 1),
    entry('db', 'spiffe://example.org/db', alias, ['unix:uid:1'], 1),
    entry('own', 'spiffe://example.org/own', AGENT, ['unix:uid:2'], 1),
  ], 1);
  for (const partial of [['meshid:datacenter:east'], ['token:role:db'], ['meshid:datacenter:east', 'token:role:web']]) {
    assert.deepEqual([...authorizedEntries(index, agent(partial), SERVER).keys()], ['own'], `fresh walk, agent with ${partial.join(', ')}`);
    assert.deepEqual([...new AuthorizedSets(index, SERVER).of(agent(partial)).keys()], ['own'], `kept set, agent with ${partial.join(', ')}`);
  }
  const both = agent(['meshid:datacenter:east', 'token:role:db', 'token:zone:a']);
  assert.deepEqual([...authorizedEntries(index, both, SERVER).keys()].sort(), ['db', 'own'], 'every selector of the alias, and more');
  assert.deepEqual([...new AuthorizedSets(index, SERVER).of(both).keys()].sort(), ['db', 'own']);
});
