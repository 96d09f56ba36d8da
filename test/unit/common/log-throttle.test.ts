import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type Clock } from '../../../src/common/clock.js';
import { LogThrottle } from '../../../src/common/log-throttle.js';

test('one line per key per window; the next one says how many were left out', () => {
  const clock = new FakeClock();
  const throttle = new LogThrottle(clock, 60_000);
  assert.deepEqual(throttle.admit('denied'), {});
  for (let i = 0; i < 5; i++) assert.equal(throttle.admit('denied'), undefined);
  assert.deepEqual(throttle.admit('other reason'), {}, 'keys are paced apart');
  clock.advance(59_999);
  assert.equal(throttle.admit('denied'), undefined);
  clock.advance(1);
  assert.deepEqual(throttle.admit('denied'), { suppressedSinceLast: 6 });
  clock.advance(60_000);
  assert.deepEqual(throttle.admit('denied'), {}, 'nothing left out in the last window');
});

test('many distinct keys are forgotten oldest first rather than kept', () => {
  const clock = new FakeClock();
  const throttle = new LogThrottle(clock, 60_000);
  throttle.admit('first');
  for (let i = 0; i < 1000; i++) throttle.admit(`key-${i}`);
  assert.deepEqual(throttle.admit('first'), {}, 'forgotten, so logged again');
});

test('with onWindowEnd, the lines left out are reported when their window ends, once, even for a key forgotten meanwhile', () => {
  const clock = new FakeClock();
  const reports: [string, number][] = [];
  const throttle = new LogThrottle(clock, 60_000, { onWindowEnd: (key, n) => reports.push([key, n]) });
  assert.deepEqual(throttle.admit('full'), {});
  for (let i = 0; i < 3; i++) assert.equal(throttle.admit('full'), undefined);
  assert.deepEqual(throttle.admit('quiet'), {});
  for (let i = 0; i < 1000; i++) throttle.admit(`key-${i}`);
  clock.advance(60_000);
  assert.deepEqual(reports, [['full', 3]], 'reported though its key was forgotten; a key with nothing left out is not');
  assert.deepEqual(throttle.admit('full'), {}, 'not counted again at the next line');
  assert.equal(throttle.admit('full'), undefined);
  clock.advance(60_000);
  assert.deepEqual(reports, [['full', 3], ['full', 1]]);
});

test('keys cycled past the bound are forgotten and logged again; a user with more keys passes its own bound (maxKeys)', () => {
  const clock = new FakeClock(0);
  const logged = (throttle: LogThrottle): number => {
    let n = 0;
    for (let round = 0; round < 2; round++) for (let k = 0; k < 300; k++) if (throttle.admit(`entry-${k}`) !== undefined) n++;
    return n;
  };
  // 300 keys in turn within one window: the default 256 forgets each before it comes round again.
  assert.equal(logged(new LogThrottle(clock)), 600);
  assert.equal(logged(new LogThrottle(clock, 60_000, { maxKeys: 300 })), 300);
});

test('stop() reports what the pending windows left out at once, a forgotten key too, and cancels their timers: no summary after the owner stopped', () => {
  const clock = new FakeClock();
  const reports: [string, number][] = [];
  const throttle = new LogThrottle(clock, 60_000, { onWindowEnd: (key, n) => reports.push([key, n]), maxKeys: 2 });
  throttle.admit('full');
  for (let i = 0; i < 3; i++) throttle.admit('full');
  throttle.admit('quiet');
  throttle.admit('forces-full-out');
  assert.equal(clock.pendingTimers(), 1);
  throttle.stop();
  assert.deepEqual(reports, [['full', 3]], 'flushed once at stop, though its key was forgotten');
  assert.equal(clock.pendingTimers(), 0, 'no timer left to write after the stop');
  // A line after the stop is still throttled, but arms no timer.
  throttle.admit('late');
  assert.equal(throttle.admit('late'), undefined);
  assert.equal(clock.pendingTimers(), 0);
  clock.advance(120_000);
  assert.deepEqual(reports, [['full', 3]]);
});

test('after the wall clock is stepped back three hours, a key logged just before is logged again within a window, not three hours later', () => {
  // FakeClock refuses to go backwards: a Clock whose time the test sets (no timer is armed without onWindowEnd).
  let now = Date.UTC(2026, 0, 1, 12);
  const clock: Clock = { now: () => now, setTimer: () => ({ cancel: () => {} }) };
  const throttle = new LogThrottle(clock, 60_000);
  assert.deepEqual(throttle.admit('clock skew'), {});
  assert.equal(throttle.admit('clock skew'), undefined);
  now -= 3 * 3_600_000;
  assert.deepEqual(throttle.admit('clock skew'), { suppressedSinceLast: 1 }, 'the window from before the step is over');
  assert.equal(throttle.admit('clock skew'), undefined, 'and a new one paces the key again');
  now += 60_000;
  assert.deepEqual(throttle.admit('clock skew'), { suppressedSinceLast: 1 });
});
