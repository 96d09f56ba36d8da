import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { failedPrecondition } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import type { CaManager } from '../../../src/server/ca/ca-manager.js';
import { ServerSvid } from '../../../src/server/server-svid.js';
import { TestCa } from '../../support/fake-sds-cache.js';

const H = 3_600_000;

test('a server SVID renewal that keeps failing (no active intermediate) is retried every 60 s and never thrown from its timer', (t) => {
  const testCa = new TestCa('example.org');
  t.after(() => testCa.dispose());
  const clock = new FakeClock(Date.now());
  let calls = 0;
  let failing = false;
  const ca = {
    trustDomain: 'example.org',
    signX509Svid: () => {
      calls++;
      // After a taint whose replacement could not be issued, the datacenter has no active intermediate.
      if (failing) throw failedPrecondition('no active intermediate CA for datacenter "east"');
      return { chain: [testCa.rootDer], notAfter: clock.now() + 2 * H };
    },
  } as unknown as CaManager;
  const svid = new ServerSvid(ca, 'east', 2 * H, clock, silentLogger());
  t.after(() => svid.stop());
  svid.identity();
  failing = true;
  clock.advance(H); // the renewal at half-life fails
  assert.equal(calls, 2);
  clock.advance(60_000); // its retry fails too, and must not escape the timer
  clock.advance(60_000);
  assert.equal(calls, 4);
  failing = false;
  clock.advance(60_000);
  assert.equal(calls, 5);
  assert.ok(svid.identity().notAfter > clock.now(), 'renewed once the CA could sign again');
});
