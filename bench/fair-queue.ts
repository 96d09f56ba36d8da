/**
 * Not a target: what the agent socket's fair queue (src/agent/endpoints/uid-fair-queue.ts) costs per job to pick the
 * next uid, with 1, 64, 1,000 and 10,000 uids waiting. Jobs do nothing but queue their uid's next one (as a stream's
 * next message does), and a fake clock charges each a cost that differs by uid, so the queue keeps that many uids
 * waiting and has to choose between them; the time measured is the queue's own. `node dist/bench/fair-queue.js`.
 */
import { UidFairQueue } from '../src/agent/endpoints/uid-fair-queue.js';
import { report, type BenchResult } from './report.js';

/** Jobs per second the queue runs with `uids` uids waiting, over about `ms` of real time after a warm-up. */
function jobsPerSecond(uids: number, ms: number): number {
  let fakeNow = 0;
  const turns: Array<() => void> = [];
  const queue = new UidFairQueue({
    pauser: { pauseReading: () => {}, resumeReading: () => {} },
    onJobError: (error) => {
      throw error;
    },
    now: () => fakeNow,
    defer: (run) => turns.push(run),
  });
  let ran = 0;
  const job = (uid: number): void =>
    queue.push(uid, 1, () => {
      ran++;
      // Between 1 and 8 µs by uid: distinct keys, and ties among uids of the same cost.
      fakeNow += 0.001 * (1 + (uid % 8));
      job(uid);
    });
  for (let uid = 0; uid < uids; uid++) job(uid);
  const runFor = (limitMs: number): [number, number] => {
    const before = ran;
    const started = performance.now();
    let elapsed = 0;
    while (elapsed < limitMs) {
      for (let i = 0; i < 10; i++) turns.shift()?.();
      elapsed = performance.now() - started;
    }
    return [ran - before, elapsed];
  };
  runFor(ms / 4);
  const [jobs, elapsed] = runFor(ms);
  return (jobs / elapsed) * 1000;
}

export function benchFairQueue(seconds: number): BenchResult[] {
  return [1, 64, 1_000, 10_000].map((uids) => ({
    name: `fair queue jobs run, ${uids} uid(s) waiting`,
    value: jobsPerSecond(uids, seconds * 1000),
    unit: 'jobs/s',
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  report(benchFairQueue(Number(process.env['BENCH_SECONDS'] ?? 2)));
}
