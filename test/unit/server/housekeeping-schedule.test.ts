import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { FakeClock } from '../../../src/common/clock.js';
import { createLogger } from '../../../src/common/log.js';
import { HOUSEKEEPING_INTERVAL_MS, HousekeepingSchedule } from '../../../src/server/housekeeping-schedule.js';

/** A logger whose lines are kept, parsed. */
function recordingLogger(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ name: 'test', destination }), lines };
}

/** Lets the schedule's promise callbacks (catch, finally: the re-arm) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('a housekeeping run that throws synchronously is logged as a failed run and the next is still armed, instead of escaping the timer', async () => {
  const clock = new FakeClock();
  const { log, lines } = recordingLogger();
  let runs = 0;
  const schedule = new HousekeepingSchedule(
    clock,
    () => {
      runs++;
      throw new Error('thrown before any promise');
    },
    log,
  );
  schedule.start();
  clock.advance(HOUSEKEEPING_INTERVAL_MS);
  await settle();
  assert.equal(runs, 1);
  assert.ok(lines.some((l) => l['msg'] === 'housekeeping failed; it runs again in a minute'), 'logged as a failed run');
  clock.advance(HOUSEKEEPING_INTERVAL_MS);
  await settle();
  assert.equal(runs, 2, 'the next run came a minute later');
  await schedule.stop();
  assert.equal(clock.pendingTimers(), 0, 'nothing armed once stopped');
});

test('stop() during a run waits for it to end, and arms no next run: the datastore it uses is closed next', async () => {
  const clock = new FakeClock();
  const { log } = recordingLogger();
  let runs = 0;
  let release!: () => void;
  const schedule = new HousekeepingSchedule(
    clock,
    () => {
      runs++;
      return new Promise<void>((resolve) => (release = resolve));
    },
    log,
  );
  schedule.start();
  clock.advance(HOUSEKEEPING_INTERVAL_MS);
  assert.equal(runs, 1);
  let stopped = false;
  const stopping = schedule.stop().then(() => (stopped = true));
  await settle();
  assert.equal(stopped, false, 'stop() waits for the run under way');
  release();
  await stopping;
  assert.equal(clock.pendingTimers(), 0, 'the run that ended after stop() armed nothing');
  clock.advance(HOUSEKEEPING_INTERVAL_MS);
  await settle();
  assert.equal(runs, 1);
});
