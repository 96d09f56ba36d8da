import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { callDeadlineOnClock } from '../../../src/common/grpc/call-deadline.js';

test('a call\'s deadline is carried onto the injected clock as the time left, not as the wall-clock instant', () => {
  const clock = new FakeClock(Date.UTC(2030, 0, 1));
  const before = Date.now();
  const onClock = callDeadlineOnClock({ getDeadline: () => new Date(Date.now() + 5_000) }, clock);
  const elapsed = Date.now() - before;
  assert.ok(onClock <= clock.now() + 5_000 && onClock >= clock.now() + 5_000 - elapsed - 1, `${onClock - clock.now()} ms left on the clock`);
  const asNumber = callDeadlineOnClock({ getDeadline: () => Date.now() + 5_000 }, clock);
  assert.ok(asNumber <= clock.now() + 5_000 && asNumber > clock.now());
});

test('a call without a deadline has none on the clock either', () => {
  const clock = new FakeClock();
  assert.equal(callDeadlineOnClock({ getDeadline: () => Infinity }, clock), Infinity);
});
