import { test } from 'node:test';
import assert from 'node:assert/strict';
import { percentile } from '../../../bench/stats.js';

const ranks = (n: number): number[] => Array.from({ length: n }, (_, i) => n - i);

test('percentile is the nearest rank: the smallest value with at least p % of the sample at or below it', () => {
  assert.equal(percentile([3, 1, 2], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 99), 4);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  // 100 values: p99 is the 99th, not the largest.
  assert.equal(percentile(ranks(100), 99), 99);
  assert.equal(percentile(ranks(1000), 99), 990);
  // Below 100 values p99 is the maximum: a p99 needs at least 100 samples to mean more than "the worst".
  assert.equal(percentile(ranks(20), 99), 20);
});

test('percentile does not move a rank up when p·n/100 is an integer that binary floating point misses', () => {
  // 99.9 / 100 * 1000 is 999.0000000000001 in doubles; the 999th value is the answer.
  assert.equal(percentile(ranks(1000), 99.9), 999);
  for (const n of [1000, 2000, 5000, 10_000]) assert.equal(percentile(ranks(n), 99.9), (n * 999) / 1000);
  for (let n = 1; n <= 3000; n++) {
    for (const p of [50, 90, 99, 99.9]) {
      const rank = Math.max(1, Math.ceil((p * 10 * n) / 1000));
      assert.equal(percentile(ranks(n), p), rank, `p${p} of 1..${n}`);
    }
  }
});
