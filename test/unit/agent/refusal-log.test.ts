import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RefusalLog } from '../../../src/agent/endpoints/refusal-log.js';
import { failed } from '../../../src/agent/attestor/attestation-failure.js';
import { unavailable } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

const call = { getPeer: () => 'unix:/run/meshid/agent.sock' };

test('an attestation failure with a cause is logged with the cause: its message and code', () => {
  const { log, records } = capturingLogger('agent');
  const refusals = new RefusalLog(log, new FakeClock(), 'Workload API', () => ({ callerPid: 4242, uid: 1000, gid: 1000 }));
  const cause = Object.assign(new Error("EACCES: permission denied, open '/proc/4242/status'"), { code: 'EACCES', errno: -13, syscall: 'open' });
  refusals.refused('FetchX509SVID', failed('could not read /proc/4242/status', cause), call);
  const [line] = records();
  assert.ok(line !== undefined);
  assert.equal(line.level, LEVEL.info);
  assert.equal(line['reason'], 'workload attestation failed: could not read /proc/4242/status');
  assert.equal(line['callerPid'], 4242);
  const err = line['err'] as Record<string, unknown> | undefined;
  assert.ok(err !== undefined, 'the cause is logged');
  assert.equal(err['message'], "EACCES: permission denied, open '/proc/4242/status'");
  assert.equal(err['code'], 'EACCES');
});

test('a refusal without a cause has no err field', () => {
  const { log, records } = capturingLogger('agent');
  const refusals = new RefusalLog(log, new FakeClock(), 'Workload API');
  refusals.refused('FetchX509SVID', unavailable('the agent has no identity state to serve yet'), call);
  const [line] = records();
  assert.ok(line !== undefined);
  assert.equal(line['err'], undefined);
  assert.equal(line['reason'], 'the agent has no identity state to serve yet');
});
