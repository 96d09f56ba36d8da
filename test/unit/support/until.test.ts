import assert from 'node:assert/strict';
import { test } from 'node:test';
import { until } from '../../support/until.js';

test('until waits through undefined and returns the first other value, synchronous or awaited', async () => {
  let calls = 0;
  assert.equal(await until('the third call', () => (++calls === 3 ? 'third' : undefined)), 'third');
  assert.equal(calls, 3);
  assert.equal(await until('an awaited value', async () => 0), 0, 'a falsy value other than false is an answer');
  await assert.rejects(until('nothing', () => undefined, 50), /^Error: timed out waiting for nothing$/);
});

test('until takes no probe that may return false, which would end the wait at once (compile-time: tsc fails without the refusal)', () => {
  const ready = (): boolean => false;
  // Never called: the refusal is the type checker's, which the build runs.
  const unused = (): void => {
    // @ts-expect-error a boolean probe: `ready() ? true : undefined` is the way to wait for it
    void until('a boolean condition', ready);
  };
  void unused;
});
