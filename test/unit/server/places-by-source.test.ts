import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlacesBySource } from '../../../src/server/places-by-source.js';

function filled(holders: Record<string, string[]>): PlacesBySource<string> {
  const places = new PlacesBySource<string>();
  for (const [source, names] of Object.entries(holders)) for (const name of names) places.add(source, name);
  return places;
}

test("a newcomer from a source holding fewer than the heaviest takes the place of that one's oldest, only while that narrows the gap", () => {
  const cases: { holders: Record<string, string[]>; newcomer: string; takes: { holder: string; source: string } | undefined; why: string }[] = [
    { holders: { a: ['a1', 'a2', 'a3'], b: ['b1', 'b2'] }, newcomer: 'c', takes: { holder: 'a1', source: 'a' }, why: 'a new source takes from the heaviest' },
    { holders: { a: ['a1', 'a2', 'a3'], b: ['b1'] }, newcomer: 'b', takes: { holder: 'a1', source: 'a' }, why: 'two short of the heaviest: it still holds as many after' },
    { holders: { a: ['a1', 'a2', 'a3'], b: ['b1', 'b2'] }, newcomer: 'b', takes: undefined, why: 'one short: the two would only swap' },
    { holders: { a: ['a1', 'a2'], b: ['b1', 'b2'] }, newcomer: 'a', takes: undefined, why: 'among the heaviest' },
    { holders: { a: ['a1'], b: ['b1'] }, newcomer: 'c', takes: undefined, why: 'every source holds one: a newcomer holding none would only swap with one' },
    { holders: {}, newcomer: 'c', takes: undefined, why: 'nothing held' },
  ];
  for (const c of cases) {
    const places = filled(c.holders);
    const size = places.size;
    assert.deepEqual(places.takeFromHeaviest(c.newcomer), c.takes, c.why);
    assert.equal(places.size, c.takes === undefined ? size : size - 1, c.why);
  }
});

test('places are given back once, oldest first per source, and a source holding none is forgotten', () => {
  const places = filled({ a: ['a1', 'a2'], b: ['b1'] });
  assert.equal(places.size, 3);
  assert.equal(places.takeOldest('a'), 'a1');
  places.remove('a', 'a1');
  assert.equal(places.size, 2, 'a holder whose place was taken gives nothing back when it closes');
  places.add('a', 'a2');
  assert.equal(places.heldBy('a'), 1, 'a holder is counted once');
  places.remove('b', 'b1');
  assert.equal(places.heldBy('b'), 0);
  assert.equal(places.takeOldest('b'), undefined);
  assert.deepEqual(places.takeFromHeaviest('c'), undefined, 'a holds one: taking it would only swap');
  assert.equal(places.size, 1);
  places.remove('a', 'a2');
  // Forgotten, not kept empty: connections from a scan of many addresses would otherwise grow the map for good.
  assert.equal((places as unknown as { bySource: Map<string, unknown> }).bySource.size, 0);
});
