import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';

test('FakeClock fires timers in due order, each at its own instant', () => {
  const clock = new FakeClock(1000);
  const seen: Array<[string, number]> = [];
  clock.setTimer(() => seen.push(['b', clock.now()]), 200);
  clock.setTimer(() => seen.push(['a', clock.now()]), 100);
  clock.advance(150);
  assert.deepEqual(seen, [['a', 1100]]);
  clock.advance(100);
  assert.deepEqual(seen, [['a', 1100], ['b', 1200]]);
  assert.equal(clock.now(), 1250);
});

test('FakeClock runs timers scheduled by timers within the same advance and skips cancelled ones', () => {
  const clock = new FakeClock(0);
  let ticks = 0;
  const tick = (): void => {
    ticks++;
    clock.setTimer(tick, 10);
  };
  clock.setTimer(tick, 10);
  const cancelled = clock.setTimer(() => assert.fail('cancelled timer fired'), 5);
  cancelled.cancel();
  clock.advance(100);
  assert.equal(ticks, 10);
});
