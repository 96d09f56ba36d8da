import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, wallClock } from '../../../src/common/clock.js';

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

/** Waits for `fired` while a referenced timer keeps the event loop up (system timers are unref'ed). */
async function held<T>(fired: Promise<T>): Promise<T> {
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    return await fired;
  } finally {
    clearInterval(keepAlive);
  }
}

test('a system timer an hour out fires once the wall clock has jumped past it, long before an hour of monotonic time', async () => {
  let wall = Date.UTC(2026, 0, 1);
  const clock = wallClock(() => wall, 5);
  const fired = new Promise<number>((resolve) => clock.setTimer(() => resolve(wall), 3_600_000));
  // A resume from suspend: the wall clock moved on, the monotonic clock did not.
  wall += 2 * 3_600_000;
  assert.equal(await held(fired), Date.UTC(2026, 0, 1) + 2 * 3_600_000);
});

test('a short system timer is not held up by the wall clock stepping back an hour', async () => {
  let wall = Date.UTC(2026, 0, 1);
  const clock = wallClock(() => wall, 5);
  const fired = new Promise<void>((resolve) => clock.setTimer(resolve, 20));
  wall -= 3_600_000;
  await held(fired);
});
