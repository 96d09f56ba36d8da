/**
 * A server that was down past the end of its active root, with a successor prepared before it stopped: the restart's
 * rotation hands over to that successor and retires the expired root.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

const H = 3_600_000;

test('a server down past its root\'s end with a root prepared: at the restart the prepared root takes over and the expired one is retired, not left active beside it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const raw = { root_ttl: '2d', intermediate_ttl: '12h', default_x509_svid_ttl: '1h', root_activation_delay: '10d' };
  const before = await openTestCa(dir, raw, new FakeClock(Date.now()));
  const first = before.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  // Past the root's half-life its successor is prepared, and outlives it.
  before.clock.advance(25 * H);
  await before.ca.rotateNow();
  const prepared = before.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'prepared')!;
  assert.ok(prepared.notAfter > first.notAfter + H);
  await before.close();

  const clock = new FakeClock(first.notAfter + H);
  const after = await openTestCa(dir, raw, clock);
  t.after(() => after.close());
  const roots = after.ca.listAuthorities().filter((a) => a.kind === 'root');
  assert.deepEqual(roots.filter((a) => a.state === 'active').map((a) => a.id), [prepared.id], 'one active root: the one prepared');
  assert.ok(!roots.some((a) => a.id === first.id && a.state === 'active'), 'the expired root is no longer active');
  assert.ok(!after.ca.bundle().x509Authorities.some((d) => d.equals(first.certDer!)), 'nor published: nothing live chains to it');
});
