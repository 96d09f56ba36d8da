import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../src/common/clock.js';
import { OutageLog } from '../../../src/common/outage-log.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

const MESSAGE = 'cannot reach the server';

test('an outage over, the next failure is a new one: warned of again, counted and timed from its own start', () => {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('test');
  const outage = new OutageLog(log, clock);
  outage.failed('unreachable', 'warn', {}, MESSAGE);
  clock.advance(60_000);
  outage.failed('unreachable', 'warn', {}, MESSAGE);
  assert.deepEqual(outage.recovered(), { failingFor: '1m', failedAttempts: 2 });
  assert.equal(outage.recovered(), undefined, 'a second success has nothing to report');

  // The same failure a day later is news to the operator, not a retry of the one that ended.
  clock.advance(86_400_000);
  outage.failed('unreachable', 'warn', {}, MESSAGE);
  clock.advance(5_000);
  assert.deepEqual(
    records().map((r) => r.level),
    [LEVEL.warn, LEVEL.debug, LEVEL.warn],
  );
  assert.deepEqual(outage.recovered(), { failingFor: '5s', failedAttempts: 1 });
});

test('each retry logged at debug says how many attempts have failed so far', () => {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('test');
  const outage = new OutageLog(log, clock);
  for (let i = 0; i < 3; i++) outage.failed('unreachable', 'error', { address: 'unix:///run/meshid/server.sock' }, MESSAGE);
  assert.deepEqual(
    records().map((r) => [r.level, r['address'], r['failedAttempts']]),
    [
      [LEVEL.error, 'unix:///run/meshid/server.sock', undefined],
      [LEVEL.debug, 'unix:///run/meshid/server.sock', 2],
      [LEVEL.debug, 'unix:///run/meshid/server.sock', 3],
    ],
  );
});
