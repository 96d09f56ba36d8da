/**
 * StateWriter's schedule beyond the first burst (state-writer.ts): one write per delay however the changes spread,
 * the retry backoff and its cap, and which write saveNow makes after a failure or beside a pending snapshot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StateWriter } from '../../../src/agent/storage/state-writer.js';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { failingStateWriter } from '../../support/failing-state-writer.js';

test('changes spread over a delay are written once, at the delay after the first of them (default 200 ms)', () => {
  const clock = new FakeClock();
  const writes: number[] = [];
  const w = new StateWriter({ clock, log: silentLogger(), write: () => void writes.push(clock.now()) });
  const t0 = clock.now();
  w.markDirty();
  clock.advance(150);
  w.markDirty();
  clock.advance(49);
  assert.deepEqual(writes, []);
  clock.advance(1);
  w.markDirty();
  clock.advance(199);
  assert.deepEqual(writes, [t0 + 200], 'the change at 150 ms armed no timer of its own');
  clock.advance(1);
  assert.deepEqual(writes, [t0 + 200, t0 + 400]);
});

test('failed writes back off doubling from the delay, capped at 60 s', () => {
  const clock = new FakeClock();
  const { writer: w, attempts } = failingStateWriter(clock, { error: 'EIO', delayMs: 100 });
  w.markDirty();
  clock.advance(200_000);
  const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
  assert.deepEqual(gaps.slice(0, 9), [200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200]);
  assert.ok(gaps.slice(9).length > 0 && gaps.slice(9).every((g) => g === 60_000), String(gaps));
  w.stop();
});

test('saveNow while a retry is due writes the whole state; after a successful write it writes only its part again', () => {
  const clock = new FakeClock();
  let failing = true;
  const calls: string[] = [];
  const w = new StateWriter({
    clock,
    log: silentLogger(),
    delayMs: 100,
    write: () => {
      calls.push('whole');
      if (failing) throw new Error('ENOSPC');
    },
  });
  w.markDirty();
  clock.advance(100);
  assert.deepEqual(calls, ['whole']);
  failing = false;
  w.saveNow(() => void calls.push('part'));
  assert.deepEqual(calls, ['whole', 'whole'], 'the whole state, since the part names only its own change');
  w.saveNow(() => void calls.push('part'));
  assert.deepEqual(calls, ['whole', 'whole', 'part'], 'the disk took the last write: a part is a part again');
  w.stop();
});

test('a part saved while the first snapshot is pending still gets the whole state written once that settles', async () => {
  const clock = new FakeClock();
  let settle!: () => void;
  const pending = new Promise<void>((resolve) => (settle = resolve));
  const calls: string[] = [];
  let first = true;
  const w = new StateWriter({
    clock,
    log: silentLogger(),
    write: () => {
      calls.push('whole');
      if (first) {
        first = false;
        return pending;
      }
      return undefined;
    },
  });
  w.markDirty();
  w.flush();
  w.saveNow(() => void calls.push('part'));
  assert.deepEqual(calls, ['whole', 'part']);
  settle();
  await pending;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, ['whole', 'part', 'whole'], 'what the pending write took is written again once it settled');
  w.stop();
});

test('a pending write that settles while a later one is still pending writes nothing: the whole state waits for the later one', async () => {
  const clock = new FakeClock();
  let settleFirst!: () => void;
  const first = new Promise<void>((resolve) => (settleFirst = resolve));
  let settleLater!: () => void;
  const later = new Promise<void>((resolve) => (settleLater = resolve));
  // What the store answers a whole write: pending on the later write (a part's, still out) until that settles.
  let storePending: Promise<void> | undefined = first;
  const calls: string[] = [];
  const w = new StateWriter({
    clock,
    log: silentLogger(),
    write: () => {
      calls.push('whole');
      return storePending;
    },
  });
  w.markDirty();
  w.flush();
  w.saveNow(() => {
    calls.push('part');
    storePending = later;
    return later;
  });
  settleFirst();
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  clock.advance(10_000);
  assert.deepEqual(calls, ['whole', 'part'], 'the store is still pending on the part: a whole write now would only be answered pending again');
  storePending = undefined;
  settleLater();
  await later;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(calls, ['whole', 'part', 'whole'], 'written once the later write settled');
  clock.advance(10_000);
  assert.deepEqual(calls, ['whole', 'part', 'whole']);
  w.stop();
});
