/**
 * The per-uid counts behind max_connections_per_uid and max_calls_per_uid (per-uid-cap.ts, uid-call-limit.ts), without
 * a socket: where the cap falls, when a capped uid is reported, and the health checks' count of their own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import type { Logger } from '../../../src/common/log.js';
import { PerUidCap } from '../../../src/agent/endpoints/per-uid-cap.js';
import { HEALTH_CALLS_PER_UID, UidCallLimit } from '../../../src/agent/endpoints/uid-call-limit.js';

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const FETCH_X509 = '/SpiffeWorkloadAPI/FetchX509SVID';

test('a uid is admitted exactly `limit` times, then refused until one is released; other uids keep their own count', () => {
  const reached: number[] = [];
  const cap = new PerUidCap(3, 'test cap', (uid) => reached.push(uid));
  for (let i = 0; i < 3; i++) assert.equal(cap.admit(1000), true, `admission ${i + 1} of 3`);
  assert.equal(cap.admit(1000), false, 'the fourth is beyond the cap');
  assert.equal(cap.count(1000), 3, 'a refusal holds nothing');
  assert.equal(cap.admit(2000), true, 'another uid is not held to the first one\'s count');
  cap.release(1000);
  assert.equal(cap.count(1000), 2);
  assert.equal(cap.admit(1000), true, 'one released, one more admitted');
  assert.equal(cap.admit(1000), false);
  for (let i = 0; i < 3; i++) cap.release(1000);
  assert.equal(cap.count(1000), 0);
  assert.deepEqual(reached, [1000, 1000]);
});

test('a capped uid is reported once however many refusals it draws, and again when it reaches the cap after dropping below it', () => {
  const reached: number[] = [];
  const cap = new PerUidCap(2, 'test cap', (uid) => reached.push(uid));
  cap.admit(7);
  cap.admit(7);
  for (let i = 0; i < 50; i++) assert.equal(cap.admit(7), false);
  assert.deepEqual(reached, [7], 'a flood logs one line, not one per refusal');
  cap.release(7);
  assert.equal(cap.admit(7), true);
  assert.equal(cap.admit(7), false);
  assert.deepEqual(reached, [7, 7], 'the second time at the cap is reported too: it is a new episode');
});

test('a cap below one is refused at construction (it would refuse every call of every uid)', () => {
  assert.throws(() => new PerUidCap(0, 'max_calls_per_uid', () => undefined), /max_calls_per_uid must be a whole number ≥ 1, got 0/);
  assert.throws(() => new PerUidCap(1.5, 'max_calls_per_uid', () => undefined), /whole number/);
  assert.doesNotThrow(() => new PerUidCap(1, 'max_calls_per_uid', () => undefined));
});

function recordingLog(lines: string[]): Logger {
  return { warn: (_fields: unknown, message: string) => lines.push(message) } as unknown as Logger;
}

test('health checks of a uid have a count of their own: a uid at max_calls_per_uid is still checked, up to HEALTH_CALLS_PER_UID of them', () => {
  const lines: string[] = [];
  const limit = new UidCallLimit(2, recordingLog(lines));
  assert.equal(limit.admit(0, FETCH_X509), true);
  assert.equal(limit.admit(0, FETCH_X509), true);
  assert.equal(limit.admit(0, FETCH_X509), false, 'the uid is at its call limit');
  for (let i = 0; i < HEALTH_CALLS_PER_UID; i++) assert.equal(limit.admit(0, HEALTH_CHECK), true, `health check ${i + 1}`);
  assert.equal(limit.admit(0, HEALTH_CHECK), false, 'health checks are bounded too');
  assert.equal(HEALTH_CALLS_PER_UID, 64);
  assert.equal(limit.openCalls(0), 2, 'health checks are not counted among the calls');
  // Releasing a health check frees a health check, not a call.
  limit.release(0, HEALTH_CHECK);
  assert.equal(limit.admit(0, FETCH_X509), false);
  assert.equal(limit.admit(0, HEALTH_CHECK), true);
  limit.release(0, FETCH_X509);
  assert.equal(limit.openCalls(0), 1);
  assert.equal(limit.admit(0, FETCH_X509), true);
  assert.equal(lines.length, 2, `one warning per cap reached: ${lines.join(' | ')}`);
  assert.match(lines[0]!, /max_calls_per_uid/);
});

test('a refusal is RESOURCE_EXHAUSTED naming the uid and the limit that applies: the config key for calls, the fixed count for health checks', () => {
  const limit = new UidCallLimit(5, recordingLog([]));
  const calls = limit.refusal(1234, FETCH_X509);
  assert.ok(isMeshidError(calls, 'resource_exhausted'));
  assert.match(calls.message, /^uid 1234 has 5 calls open on the meshid-agent socket, the most allowed \(agent config max_calls_per_uid\)/);
  const checks = limit.refusal(1234, HEALTH_CHECK);
  assert.ok(isMeshidError(checks, 'resource_exhausted'));
  assert.match(checks.message, /^uid 1234 has 64 health checks open/);
});
