import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { callerRecheck } from '../../../src/agent/endpoints/caller-recheck.js';
import { isMeshidError, unavailable } from '../../../src/common/errors.js';
import type { Selector } from '../../../src/common/spiffe/selector.js';

const uid = (n: number): Selector[] => [{ type: 'unix', value: `uid:${n}` }];
const call = (peer: string) => ({ getPeer: () => peer });

test('one attestation per connection and push turn, however many streams the connection has', async () => {
  let attested = 0;
  const recheck = callerRecheck(() => (attested++, uid(1)));
  for (let i = 0; i < 100; i++) recheck(call('conn-a'), uid(1));
  recheck(call('conn-b'), uid(1));
  assert.equal(attested, 2);
  await nextTurn();
  recheck(call('conn-a'), uid(1));
  assert.equal(attested, 3, 'the next push attests again');
});

test('a caller that now attests to other selectors, or no longer attests, may not be pushed to', async () => {
  let now: Selector[] | Error = uid(1);
  const recheck = callerRecheck(() => {
    if (now instanceof Error) throw now;
    return now;
  });
  recheck(call('conn'), uid(1));
  await nextTurn();
  now = uid(65534);
  assert.throws(() => recheck(call('conn'), uid(1)), (e: unknown) => isMeshidError(e, 'unavailable') && /changed since this stream opened/.test((e as Error).message));
  // A stream opened after the change, on the same connection, is the caller as it is now.
  assert.doesNotThrow(() => recheck(call('conn'), uid(65534)));
  await nextTurn();
  now = unavailable('process 42 has exited');
  assert.throws(() => recheck(call('conn'), uid(65534)), /process 42 has exited/);
  await nextTurn();
  now = new Error('EIO');
  assert.throws(() => recheck(call('conn'), uid(65534)), (e: unknown) => isMeshidError(e, 'unavailable') && /workload attestation failed/.test((e as Error).message));
});

test('a stream works out its connection key once, not on every push', async () => {
  let peerReads = 0;
  const stream = { getPeer: () => (peerReads++, 'conn') };
  const opened = uid(1);
  const recheck = callerRecheck(() => uid(1));
  for (let push = 0; push < 3; push++) {
    recheck(stream, opened);
    await nextTurn();
  }
  assert.equal(peerReads, 1);
});
