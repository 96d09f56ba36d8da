import { test, type TestContext } from 'node:test';
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

/**
 * wallClock's timers re-read the clocks at every check (every `checkEveryMs` of real time) and decide there to fire or
 * to wait for the next check. A test clock over a wall-clock reading the test sets, and the monotonic clock
 * (performance.now) mocked: time passes on either only when the test says, and every read of either is counted.
 */
function testClocks(t: TestContext): {
  wall: { ms: number };
  mono: { ms: number };
  reads: () => number;
  clock: ReturnType<typeof wallClock>;
} {
  const wall = { ms: Date.UTC(2026, 0, 1) };
  const mono = { ms: 1000 };
  let reads = 0;
  t.mock.method(performance, 'now', () => (reads++, mono.ms));
  const clock = wallClock(() => (reads++, wall.ms), 5);
  return { wall, mono, reads: () => reads, clock };
}

/**
 * Resolves at the first of: the timer fired, or it went on reading the clocks after its first check. A check reads each
 * clock once (at most twice in all); after the test moved a clock, the next check is the timer's decision on the new
 * times, and a third read without a firing is a timer that chose to wait and checked again. No time limit: a pending
 * timer checks again every few milliseconds, and fires or reads.
 */
async function firedOrWaitedAgain(fired: () => boolean, reads: () => number): Promise<void> {
  const from = reads();
  while (!fired() && reads() < from + 3) await new Promise((r) => setTimeout(r, 1));
}

test('a system timer an hour out fires once the wall clock has jumped past it, long before an hour of monotonic time', async (t) => {
  const { wall, reads, clock } = testClocks(t);
  let firedAt: number | undefined;
  clock.setTimer(() => (firedAt = wall.ms), 3_600_000);
  // A resume from suspend: the wall clock moved on, the monotonic clock did not.
  wall.ms += 2 * 3_600_000;
  await firedOrWaitedAgain(() => firedAt !== undefined, reads);
  assert.equal(firedAt, Date.UTC(2026, 0, 1) + 2 * 3_600_000, 'fired at its first check after the jump');
});

test('a short system timer is not held up by the wall clock stepping back an hour', async (t) => {
  const { wall, mono, reads, clock } = testClocks(t);
  let fired = false;
  clock.setTimer(() => (fired = true), 20);
  wall.ms -= 3_600_000;
  // Its 20 ms pass on the monotonic clock; by the wall clock it is due in an hour and 20 ms.
  mono.ms += 20;
  await firedOrWaitedAgain(() => fired, reads);
  assert.equal(fired, true, 'fired at its first check once its time had passed on the monotonic clock');
});

test('a short system timer waits while neither clock is within a check of its time', async (t) => {
  const { wall, mono, reads, clock } = testClocks(t);
  let fired = false;
  const timer = clock.setTimer(() => (fired = true), 20);
  wall.ms -= 3_600_000;
  // 10 ms left on the monotonic clock, more than the 5 ms between checks: the timer checks again rather than fire.
  mono.ms += 10;
  await firedOrWaitedAgain(() => fired, reads);
  timer.cancel();
  assert.equal(fired, false, 'checked twice and waited: the two helpers above can tell a timer that waits');
});
