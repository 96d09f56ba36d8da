import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MinHeap } from '../../../src/agent/endpoints/min-heap.js';
import { seededRandom } from '../../support/seeded-random.js';

interface Item {
  readonly id: number;
  key: number;
  heapIndex: number;
}

/** Keys of few values, so that ties are common; the id breaks them, as `since` does in the fair queue. */
const less = (a: Item, b: Item): boolean => a.key < b.key || (a.key === b.key && a.id < b.id);

/** The least item by a scan: what the heap replaces. */
function scanLeast(items: readonly Item[]): Item | undefined {
  let best: Item | undefined;
  for (const item of items) if (best === undefined || less(item, best)) best = item;
  return best;
}

test('random pushes, key changes either way, removals and takes of the least: the heap picks what a scan picks', () => {
  for (let seed = 1; seed <= 50; seed++) {
    const rand = seededRandom(seed);
    const pick = (n: number): number => Math.floor(rand() * n);
    const heap = new MinHeap<Item>(less);
    const present: Item[] = [];
    let nextId = 0;
    for (let step = 0; step < 2_000; step++) {
      const op = pick(5);
      if (op <= 1 || present.length === 0) {
        const item: Item = { id: nextId++, key: pick(8), heapIndex: -1 };
        heap.push(item);
        present.push(item);
      } else if (op === 2) {
        const item = present[pick(present.length)]!;
        item.key += pick(7) - 3;
        heap.update(item);
      } else {
        // Half the time the least (what the fair queue does with an emptied backlog), half any item.
        const item = op === 3 ? scanLeast(present)! : present[pick(present.length)]!;
        heap.remove(item);
        assert.equal(item.heapIndex, -1);
        present.splice(present.indexOf(item), 1);
      }
      assert.equal(heap.size, present.length, `seed ${seed} step ${step}`);
      assert.equal(heap.peek(), scanLeast(present), `seed ${seed} step ${step}`);
    }
    // Emptied least first, the heap gives every item in the scan's order.
    while (present.length > 0) {
      const least = scanLeast(present)!;
      assert.equal(heap.peek(), least, `seed ${seed}, draining`);
      heap.remove(least);
      present.splice(present.indexOf(least), 1);
    }
    assert.equal(heap.peek(), undefined);
    assert.equal(heap.size, 0);
  }
});

test('an item whose key changed is moved where it stands: up past its parents, down past its children', () => {
  const items = [5, 3, 8, 1, 9, 7].map((key, id): Item => ({ id, key, heapIndex: -1 }));
  const heap = new MinHeap<Item>(less);
  for (const item of items) heap.push(item);
  assert.equal(heap.peek()?.key, 1);
  const [, , eight, one] = items;
  eight!.key = 0;
  heap.update(eight!);
  assert.equal(heap.peek(), eight);
  eight!.key = 10;
  heap.update(eight!);
  assert.equal(heap.peek(), one);
  const order: number[] = [];
  for (let least = heap.peek(); least !== undefined; least = heap.peek()) {
    order.push(least.key);
    heap.remove(least);
  }
  assert.deepEqual(order, [1, 3, 5, 7, 9, 10]);
});
