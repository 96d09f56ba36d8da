/**
 * The CA's own rotation timer (nothing calls rotateNow or recheck here): a root prepared by `ca rotate-root` takes over
 * when its activation delay has passed, at the time `ca show` gives for it, not at some later decision.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
