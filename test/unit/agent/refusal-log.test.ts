import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callerFields, noIdentityFor, RefusalLog } from '../../../src/agent/endpoints/refusal-log.js';
import { failed } from '../../../src/agent/attestor/attestation-failure.js';
import { internal, MeshidError, unavailable } from '../../../src/common/errors.js';
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

test('refusals are throttled per rpc, code and caller uid: a line a minute for each, none hidden behind another\'s', () => {
  const { log, records } = capturingLogger('agent');
  const clock = new FakeClock();
  const uidOf = new Map<object, number>();
  const callOf = (uid: number): { getPeer: () => string } => {
    const c = { getPeer: () => `uds-peer#${uid}` };
    uidOf.set(c, uid);
    return c;
  };
  const refusals = new RefusalLog(log, clock, 'Workload API', (c) => ({ callerPid: 1, uid: uidOf.get(c)!, gid: 1 }));
  const denied = noIdentityFor([], 'no identity issued');
  const a = callOf(1000);
  for (let i = 0; i < 3; i++) refusals.refused('FetchX509SVID', denied, a);
  assert.equal(records().length, 1, 'one line a minute for one rpc, code and uid');
  refusals.refused('FetchJWTSVID', denied, a);
  refusals.refused('FetchX509SVID', unavailable('the agent has no identity state to serve yet'), a);
  refusals.refused('FetchX509SVID', denied, callOf(1001));
  assert.deepEqual(
    records().map((r) => `${r['rpc']} ${r['code']} ${r['uid']}`),
    ['FetchX509SVID permission_denied 1000', 'FetchJWTSVID permission_denied 1000', 'FetchX509SVID unavailable 1000', 'FetchX509SVID permission_denied 1001'],
  );
  clock.advance(60_000);
  refusals.refused('FetchX509SVID', denied, a);
  assert.equal(records().at(-1)!['suppressedSinceLast'], 2, 'the next minute\'s line counts the ones left out');
});

test('only a refusal with no identity to hand out is a warning, with the selectors; others are info; a failure is an error line every time', () => {
  const { log, records } = capturingLogger('agent');
  const refusals = new RefusalLog(log, new FakeClock(), 'SDS', () => ({ callerPid: 42, uid: 1000, gid: 2000 }));
  refusals.refused('StreamSecrets', noIdentityFor([{ type: 'unix', value: 'uid:1000' }], 'no identity issued'), call);
  refusals.refused('StreamSecrets', new MeshidError('invalid_argument', 'resource name too long'), call);
  refusals.refused('FetchSecrets', internal('the cache is inconsistent'), call);
  refusals.refused('FetchSecrets', internal('the cache is inconsistent'), call);
  refusals.refused('FetchSecrets', new TypeError('boom'), call);
  const lines = records().map((r) => ({ level: r.level, code: r['code'], selectors: r['selectors'], gid: r['gid'], msg: r.msg }));
  assert.deepEqual(lines[0], { level: LEVEL.warn, code: 'permission_denied', selectors: ['unix:uid:1000'], gid: 2000, msg: lines[0]!.msg });
  assert.match(lines[0]!.msg, /^SDS call refused: no identity issued/);
  assert.deepEqual(lines[1], { level: LEVEL.info, code: 'invalid_argument', selectors: undefined, gid: 2000, msg: 'SDS call refused' });
  assert.deepEqual(
    lines.slice(2).map((l) => `${l.level} ${l.msg}`),
    [`${LEVEL.error} SDS call failed`, `${LEVEL.error} SDS call failed`, `${LEVEL.error} SDS call failed`],
    'an internal error and an exception are the agent\'s own failures: never throttled away',
  );
});

test('callerFields names the caller by the kernel\'s pid, uid and gid, each its own', () => {
  assert.deepEqual(callerFields({ pid: 4242, uid: 1000, gid: 2000 }), { callerPid: 4242, uid: 1000, gid: 2000 });
});
