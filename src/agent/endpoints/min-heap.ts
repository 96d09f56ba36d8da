/**
 * A binary min-heap whose items keep their own place in it (`heapIndex`), so that an item whose key changed is moved
 * (`update`) or taken out (`remove`) where it stands, in O(log n), without a search. The order is `less`'s alone: the
 * heap adds no tie-break of its own, so give `less` one where ties must come out in a set order.
 */

export interface HeapItem {
  /** Where the item is in the heap's array; -1 when it is in no heap. Only the heap writes it. */
  heapIndex: number;
}

export class MinHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  /** `less(a, b)`: a comes out before b. Must be a strict order on the items in the heap. */
  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  /** The least item, left in the heap; undefined when it is empty. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    item.heapIndex = this.items.length;
    this.items.push(item);
    this.siftUp(item.heapIndex);
  }

  /** Puts `item` (in this heap) back in order after its key changed, whichever way. */
  update(item: T): void {
    if (!this.siftUp(item.heapIndex)) this.siftDown(item.heapIndex);
  }

  /** Takes `item` (in this heap) out. */
  remove(item: T): void {
    const index = item.heapIndex;
    const last = this.items.pop() as T;
    item.heapIndex = -1;
    if (last === item) return;
    this.place(last, index);
    this.update(last);
  }

  /** Moves the item at `index` up while it is less than its parent; says whether it moved. */
  private siftUp(index: number): boolean {
    const item = this.items[index] as T;
    let at = index;
    while (at > 0) {
      const parentIndex = (at - 1) >> 1;
      const parent = this.items[parentIndex] as T;
      if (!this.less(item, parent)) break;
      this.place(parent, at);
      at = parentIndex;
    }
    if (at === index) return false;
    this.place(item, at);
    return true;
  }

  private siftDown(index: number): void {
    const item = this.items[index] as T;
    const count = this.items.length;
    let at = index;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= count) break;
      const right = left + 1;
      const child = right < count && this.less(this.items[right] as T, this.items[left] as T) ? right : left;
      const smaller = this.items[child] as T;
      if (!this.less(smaller, item)) break;
      this.place(smaller, at);
      at = child;
    }
    if (at !== index) this.place(item, at);
  }

  private place(item: T, index: number): void {
    this.items[index] = item;
    item.heapIndex = index;
  }
}
