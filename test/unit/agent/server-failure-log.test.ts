/**
 * How the agent tells the operator meshid-server cannot be reached or trusted (server-failure-log.ts): which failures
 * are this host's to fix (its clock, its trust bundle: error) and which are an outage (warn), and what each says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { createLogger } from '../../../src/common/log.js';
import { OutageLog } from '../../../src/common/outage-log.js';
import { logAttestFailure, logSyncFailure } from '../../../src/agent/client/server-failure-log.js';
import { LEVEL, parseLogLines, type LogRecord } from '../../support/log-lines.js';

/** A fresh OutageLog (so each failure is its first) and the lines it wrote, at the daemons' default level. */
function outage(): { clock: FakeClock; log: OutageLog; lines: () => LogRecord[] } {
  const clock = new FakeClock();
  const raw: string[] = [];
  const logger = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { clock, log: new OutageLog(logger, clock), lines: () => parseLogLines(raw.join('')) };
}

function oneLine(fail: (o: OutageLog, now: number) => void): LogRecord {
  const o = outage();
  fail(o.log, o.clock.now());
  const lines = o.lines();
  assert.equal(lines.length, 1, JSON.stringify(lines));
  return lines[0]!;
}

const EXPIRED = '14 UNAVAILABLE: No connection established. Last error: certificate has expired';
const UNTRUSTED = '14 UNAVAILABLE: No connection established. Last error: self-signed certificate in certificate chain';
const DOWN = '14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED /run/meshid/server.sock';

test('an attestation refused for the clocks is an error naming the clock; one the server cannot take now is a warn that says so; an unreachable server a warn that says that', () => {
  const clock = oneLine((o, now) => logAttestFailure(o, new MeshidError('unavailable', EXPIRED), now, 1000));
  assert.equal(clock.level, LEVEL.error);
  assert.match(clock.msg, /certificate is expired by this host's clock/);
  assert.equal(clock['retryInMs'], 1000);

  const down = oneLine((o, now) => logAttestFailure(o, new MeshidError('unavailable', DOWN), now, 2000));
  assert.equal(down.level, LEVEL.warn);
  assert.match(down.msg, /cannot reach meshid-server to attest/);

  const exhausted = oneLine((o, now) => logAttestFailure(o, new MeshidError('resource_exhausted', 'too many attestations'), now, 3000));
  assert.equal(exhausted.level, LEVEL.warn);
  assert.match(exhausted.msg, /cannot attest this agent now \(out of resources\)/);
});

test('a Sync stream failing on the clocks or on a server certificate the trust bundle does not authenticate is an error that says what to fix; an outage is a warn, "lost" only once a stream was open', () => {
  const fields = { reason: 'r', retryInMs: 5000 };
  const clock = oneLine((o, now) => logSyncFailure(o, new MeshidError('unavailable', EXPIRED), now, fields, true));
  assert.equal(clock.level, LEVEL.error);
  assert.match(clock.msg, /by this host's clock.*serving from the cache/);

  for (const synced of [true, false]) {
    const untrusted = oneLine((o, now) => logSyncFailure(o, new MeshidError('unavailable', UNTRUSTED), now, fields, synced));
    assert.equal(untrusted.level, LEVEL.error);
    assert.match(untrusted.msg, /trust bundle does not authenticate/);
    assert.match(untrusted.msg, /--trust-bundle/);
  }

  const lost = oneLine((o, now) => logSyncFailure(o, new MeshidError('unavailable', DOWN), now, fields, true));
  assert.equal(lost.level, LEVEL.warn);
  assert.match(lost.msg, /^lost the Sync stream/);
  assert.equal(lost['retryInMs'], 5000);

  const never = oneLine((o, now) => logSyncFailure(o, new MeshidError('unavailable', DOWN), now, fields, false));
  assert.equal(never.level, LEVEL.warn);
  assert.match(never.msg, /^cannot open the Sync stream/);
});
