import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../../src/common/clock.js';
import { WaitingNamesLog } from '../../../src/agent/sds/waiting-names.js';

const HOUR = 3_600_000;

/**
 * A clock stepped backwards (NTP correcting a host that ran ahead), which FakeClock refuses to do: a Clock whose time
 * the test sets; no timer is needed by what is tested here.
 */
test('after the wall clock is stepped back an hour, a uid whose per-minute budget of waiting lines was used up gets lines for new name sets within the minute, not an hour later', () => {
  let now = Date.UTC(2026, 0, 1, 12);
  const clock: Clock = { now: () => now, setTimer: () => ({ cancel: () => {} }) };
  const log = new WaitingNamesLog(clock);
  let admitted = 0;
  for (let i = 0; admitted < 100 && i < 100; i++) {
    if (log.admit('waits', 1000, [`spiffe://example.org/set-${i}`]) === undefined) break;
    admitted++;
  }
  assert.ok(admitted > 0 && admitted < 100, 'the per-uid budget is used up within the minute');
  now -= HOUR;
  now += 61_000;
  assert.notEqual(log.admit('waits', 1000, ['spiffe://example.org/after-the-step']), undefined, 'a new name set is logged a minute after the step');
});
