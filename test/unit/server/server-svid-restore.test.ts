/** The saved server SVID at a restart (server-svid.ts restore): when it is presented, and when it is next renewed. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { ServerSvid } from '../../../src/server/server-svid.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { teardown } from '../../support/teardown.js';

const H = 3_600_000;

/** Starts a server's CA and ServerSvid over one data dir and clock; each start stops the one before. */
function server(t: TestContext) {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const file = path.join(dir, 'server-svid.json');
  let stopPrevious: (() => Promise<void>) | undefined;
  const start = async (datacenter = 'east', ttlMs = 24 * H) => {
    await stopPrevious?.();
    const ca = await openTestCa(dir, {}, clock);
    const svid = new ServerSvid(ca.ca, datacenter, ttlMs, clock, silentLogger(), file);
    const changes: string[] = [];
    svid.onChange((id) => changes.push(id.certChainPem));
    stopPrevious = async () => {
      svid.stop();
      await ca.close();
    };
    return { svid, changes };
  };
  teardown(t).after(async () => stopPrevious?.());
  return { start, clock };
}

test('a restored server SVID is renewed at the half-life of its own lifetime, not half-way from the restart', async (t) => {
  const s = server(t);
  const first = (await s.start()).svid.identity();
  s.clock.advance(10 * H);
  const { svid, changes } = await s.start();
  assert.equal(svid.identity().certChainPem, first.certChainPem, 'the saved one is presented');
  changes.length = 0;
  // Issued at 0 for 24 h: its half-life is 12 h after issue (5 h after the restart would be half of what is left).
  s.clock.advance(2 * H + 60_000);
  assert.equal(changes.length, 1, 'renewed at its half-life');
  assert.notEqual(svid.identity().certChainPem, first.certChainPem);
});

test('a saved server SVID longer-lived than the TTL configured now is replaced', async (t) => {
  const s = server(t);
  const first = (await s.start('east', 24 * H)).svid.identity();
  const { svid } = await s.start('east', H);
  const now = s.clock.now();
  assert.notEqual(svid.identity().certChainPem, first.certChainPem);
  assert.ok(svid.identity().notAfter <= now + H);
});

test("a server SVID saved by another datacenter's server is not presented by this one", async (t) => {
  const s = server(t);
  const east = (await s.start('east')).svid.identity();
  const { svid } = await s.start('west');
  assert.notEqual(svid.identity().certChainPem, east.certChainPem);
  assert.equal((await s.start('west')).svid.identity().certChainPem, svid.identity().certChainPem, "west's own is saved and presented again");
});
