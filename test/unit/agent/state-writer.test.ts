import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StateWriter } from '../../../src/agent/storage/state-writer.js';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { failingStateWriter } from '../../support/failing-state-writer.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';

test('a burst of changes becomes one write after the delay; flush writes pending changes at once', () => {
  const clock = new FakeClock();
  let writes = 0;
  const w = new StateWriter({ clock, log: silentLogger(), write: () => void writes++, delayMs: 200 });
  for (let i = 0; i < 100; i++) w.markDirty();
  clock.advance(199);
  assert.equal(writes, 0);
  clock.advance(1);
  assert.equal(writes, 1);
  clock.advance(10_000);
  assert.equal(writes, 1, 'nothing more to write');
  w.markDirty();
  w.flush();
  assert.equal(writes, 2);
  w.stop();
  assert.equal(writes, 2, 'stop writes only what is pending');
});

test('a failed write is retried later with a growing delay, and succeeds when the disk recovers', () => {
  const clock = new FakeClock();
  let failing = true;
  const { writer: w, attempts } = failingStateWriter(clock, { error: 'ENOSPC', failing: () => failing, delayMs: 100 });
  const t0 = clock.now();
  w.markDirty();
  clock.advance(100);
  clock.advance(200);
  assert.deepEqual(attempts.map((t) => t - t0), [100, 300]);
  failing = false;
  clock.advance(400);
  assert.equal(attempts.length, 3);
  clock.advance(10_000);
  assert.equal(attempts.length, 3);
  w.stop();
});

test('after stop nothing is written: a late change (an SVID call still out at shutdown) leaves the data dir alone', () => {
  const clock = new FakeClock();
  let failing = true;
  const { writer: w, attempts } = failingStateWriter(clock, { error: 'EIO', failing: () => failing, delayMs: 200 });
  w.markDirty();
  w.stop(); // its write fails: no retry is armed after stop
  failing = false;
  w.markDirty();
  w.flush();
  clock.advance(120_000);
  assert.equal(attempts.length, 1);
});

test('saveNow writes its part at once and leaves the coalesced write pending; when it fails, the whole state is retried', () => {
  const clock = new FakeClock();
  const writes: string[] = [];
  let failing = false;
  const w = new StateWriter({ clock, log: silentLogger(), write: () => void writes.push('all'), delayMs: 200 });
  w.markDirty();
  w.saveNow(() => void writes.push('part'));
  assert.deepEqual(writes, ['part']);
  clock.advance(200);
  assert.deepEqual(writes, ['part', 'all'], 'the rest keeps its coalesced write');

  w.markDirty();
  failing = true;
  w.saveNow(() => {
    if (failing) throw new Error('ENOSPC');
  });
  clock.advance(200);
  assert.deepEqual(writes, ['part', 'all'], 'the retry waits for its backoff');
  clock.advance(200);
  assert.deepEqual(writes, ['part', 'all', 'all'], 'then writes the whole state, the failed part with it');
  w.stop();
});

test("a failed write is an error line with the fields README's logging paragraph names: err (its words) and retryInMs (in ms, when the next attempt comes)", () => {
  const clock = new FakeClock();
  const { log, records } = capturingLogger('meshid-agent');
  const { writer: w, attempts } = failingStateWriter(clock, { error: 'ENOSPC: no space left on device', delayMs: 100, log });
  w.markDirty();
  clock.advance(100);
  const [line, ...more] = records().filter((r) => r.msg === 'cannot persist the agent state; will retry');
  assert.equal(more.length, 0);
  assert.equal(line?.level, LEVEL.error);
  assert.equal((line?.['err'] as { message?: string } | undefined)?.message, 'ENOSPC: no space left on device');
  assert.equal(line?.['retryInMs'], 200);
  assert.equal(line?.['retryMs'], undefined, 'the old name is gone');
  clock.advance(199);
  assert.equal(attempts.length, 1);
  clock.advance(1);
  assert.equal(attempts.length, 2, 'the next attempt comes retryInMs later');
  w.stop();
});

test('a write that answers pending (a promise: the first snapshot is still being written off the event loop) is not written again, by the delay or by changes, until that settles; then once', async () => {
  const clock = new FakeClock();
  let release!: () => void;
  const backgroundWrite = new Promise<void>((resolve) => (release = resolve));
  let pending = true;
  let writes = 0;
  const w = new StateWriter({ clock, log: silentLogger(), delayMs: 200, write: () => (writes++, pending ? backgroundWrite : undefined) });
  w.markDirty();
  clock.advance(200);
  assert.equal(writes, 1);
  for (let i = 0; i < 20; i++) {
    w.markDirty();
    clock.advance(1_000);
  }
  await Promise.resolve();
  assert.equal(writes, 1, 'no write while it is pending');
  pending = false;
  release();
  await backgroundWrite;
  assert.equal(writes, 2, 'written once right after it settled, with the changes made meanwhile');
  clock.advance(10_000);
  assert.equal(writes, 2, 'saved: nothing more to write');
  w.stop();
});

test('a part saved at once (a withdrawal) that is pending is followed by one write of the whole state once the pending write settles', async () => {
  const clock = new FakeClock();
  let release!: () => void;
  const backgroundWrite = new Promise<void>((resolve) => (release = resolve));
  const writes: string[] = [];
  const w = new StateWriter({ clock, log: silentLogger(), delayMs: 200, write: () => void writes.push('all') });
  w.saveNow(() => (writes.push('part'), backgroundWrite));
  clock.advance(10_000);
  assert.deepEqual(writes, ['part']);
  release();
  await backgroundWrite;
  assert.deepEqual(writes, ['part', 'all']);
  w.stop();
});

test('a stop while a write is pending writes at once, and nothing is written when the pending write settles after', async () => {
  const clock = new FakeClock();
  let release!: () => void;
  const backgroundWrite = new Promise<void>((resolve) => (release = resolve));
  let writes = 0;
  const w = new StateWriter({ clock, log: silentLogger(), delayMs: 200, write: () => (writes++, backgroundWrite) });
  w.markDirty();
  clock.advance(200);
  w.markDirty();
  assert.equal(writes, 1);
  w.stop();
  assert.equal(writes, 2, 'stop writes at once (the store then writes the first snapshot at once: AgentStore.close)');
  release();
  await backgroundWrite;
  clock.advance(10_000);
  assert.equal(writes, 2);
});

test('a store answering pending with a promise already settled gets one write a turn: the writer does not hold the event loop in microtasks', async () => {
  const clock = new FakeClock();
  const settled = Promise.resolve();
  let writes = 0;
  // Pending, but with the signal of a write that has already ended (as a store keeping an old compaction's promise
  // would answer), until the 200th write.
  const w = new StateWriter({ clock, log: silentLogger(), delayMs: 200, write: () => (++writes < 200 ? settled : undefined) });
  w.markDirty();
  clock.advance(200);
  assert.equal(writes, 1);
  // What is queued behind the writer's writes on the event loop (I/O, a timer): it runs before they are done.
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(writes < 10, `${writes} writes before the event loop turned`);
  // And the writer carries on, a turn at a time, until the store says saved (a bound, not a timing: turns counted).
  for (let turn = 0; turn < 1_000 && writes < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(writes, 200);
  clock.advance(10_000);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(writes, 200, 'saved: nothing more to write');
  w.stop();
});
