/**
 * watchedUnaryCall (src/common/cli/stalled-connection.ts): how a CLI's unary call ends. The gRPC call is stubbed (a
 * function calling back at once): what is under test is what the wrapper does with the answer, not the transport.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ClientUnaryCall, ServiceError } from '@grpc/grpc-js';
import { watchedUnaryCall, type StalledConnectionWatch } from '../../../src/common/cli/stalled-connection.js';

const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function quietWatch(): StalledConnectionWatch & { stopped: boolean } {
  return { foreign: new Promise<never>(() => undefined), stopped: false, stop() { this.stopped = true; } };
}

function failingCall(callback: (err: ServiceError | null, res?: unknown) => void): ClientUnaryCall {
  callback(Object.assign(new Error('14 UNAVAILABLE: stubbed'), { code: 14, details: 'stubbed', metadata: undefined }) as unknown as ServiceError);
  return { cancel: () => undefined } as unknown as ClientUnaryCall;
}

test('a call whose error translation fails itself still ends, with the translation\'s error, and stops its watch (stubbed call)', async () => {
  const watch = quietWatch();
  let outcome: unknown = 'still waiting';
  watchedUnaryCall(watch, failingCall, () => Promise.reject(new Error('translating failed'))).then(
    () => (outcome = 'resolved'),
    (err: unknown) => (outcome = err),
  );
  await settle();
  assert.ok(outcome instanceof Error, `the call ended: ${String(outcome)}`);
  assert.equal(outcome.message, 'translating failed');
  assert.ok(watch.stopped, 'the watch is stopped');
});

test('a call\'s error is reported as translated, and stops its watch (stubbed call)', async () => {
  const watch = quietWatch();
  await assert.rejects(watchedUnaryCall(watch, failingCall, async (err) => new Error(`translated: ${err.details}`)), /^Error: translated: stubbed$/);
  assert.ok(watch.stopped);
});
