/**
 * The CA's own rotation timer (nothing calls rotateNow here): a root prepared by `ca rotate-root` takes over when its
 * activation delay has passed, at the time `ca show` gives for it, not at some later decision; and between decisions
 * the timer waits for the next one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type TimerHandle } from '../../../src/common/clock.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { until } from '../../support/until.js';

const MIN = 60_000;
const H = 60 * MIN;

test('a prepared root is activated by the rotation timer when its activation delay has passed', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const ca = await openTestCa(dir, { root_activation_delay: '5h' });
  t.after(() => ca.close());
  ca.ca.start();
  const prepared = await ca.ca.rotateRoot();
  const at = ca.ca.rootActivatesAt(prepared.id)!;
  assert.equal(at, prepared.createdAt + 5 * H);
  const stateOf = () => ca.ca.listAuthorities().find((a) => a.id === prepared.id)?.state;
  // Five minutes at a time, each rotation the timer starts finished before the next step.
  while (ca.clock.now() < at + 5 * MIN) {
    ca.clock.advance(5 * MIN);
    await until('the CA timer re-armed', () => (ca.clock.pendingTimers() > 0 ? true : undefined));
    if (ca.clock.now() < at) assert.equal(stateOf(), 'prepared', 'not before its time');
  }
  assert.equal(stateOf(), 'active');
});

test('once an intermediate\'s successor is prepared, the timer waits for the next decision instead of re-running the rotation every second', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  let timersSet = 0;
  class CountingClock extends FakeClock {
    override setTimer(fn: () => void, ms: number): TimerHandle {
      timersSet++;
      return super.setTimer(fn, ms);
    }
  }
  const ca = await openTestCa(dir, {}, new CountingClock(Date.UTC(2026, 0, 1)));
  t.after(() => ca.close());
  ca.ca.start();
  // Past the intermediates' half-life (intermediate_ttl 7d): their successors are prepared.
  ca.clock.advance(3.5 * 24 * H + H);
  await ca.ca.recheck();
  assert.ok(ca.ca.listAuthorities().some((a) => a.kind === 'intermediate' && a.state === 'prepared'));
  timersSet = 0;
  for (let step = 0; step < 24; step++) {
    ca.clock.advance(5 * MIN);
    await until('the CA timer re-armed', () => (ca.clock.pendingTimers() > 0 ? true : undefined));
  }
  // Two hours in which nothing falls due (a JWT key's step at most): not a rotation at each step.
  assert.ok(timersSet <= 3, `${timersSet} rotation timers set in two quiet hours`);
});
