import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UidFairQueue } from '../../../src/agent/endpoints/uid-fair-queue.js';

/** A queue whose turns run only when `turn()` is called and whose clock advances by what each job says it cost. */
function harness(options: { highWaterBytes?: number; highWaterJobs?: number; lowWaterJobs?: number } = {}) {
  let now = 0;
  const turns: Array<() => void> = [];
  const pauses: string[] = [];
  const ran: string[] = [];
  const queue = new UidFairQueue({
    pauser: { pauseReading: (uid) => pauses.push(`pause ${uid}`), resumeReading: (uid) => pauses.push(`resume ${uid}`) },
    onJobError: () => ran.push('error'),
    now: () => now,
    defer: (run) => turns.push(run),
    ...options,
  });
  const job = (uid: number, name: string, costMs: number, bytes = 1) =>
    queue.push(uid, bytes, () => {
      ran.push(name);
      now += costMs;
    });
  const turn = (): boolean => {
    const next = turns.shift();
    next?.();
    return next !== undefined;
  };
  const drain = (): void => {
    while (turn());
  };
  const advance = (ms: number): void => {
    now += ms;
  };
  return { queue, job, turn, drain, ran, pauses, now: advance };
}

test('the uid that used the least time goes next: cheap jobs of one uid run until they used what one costly job did', () => {
  const h = harness();
  for (let i = 1; i <= 3; i++) h.job(65534, `flood${i}`, 7);
  for (let i = 1; i <= 4; i++) h.job(0, `fetch${i}`, 1);
  h.drain();
  assert.deepEqual(h.ran, ['flood1', 'fetch1', 'fetch2', 'fetch3', 'fetch4', 'flood2', 'flood3']);
});

test('one job per turn, and a uid that starts waiting is placed level with the others, not with credit from idling', () => {
  const h = harness();
  h.job(1, 'a1', 5);
  h.job(1, 'a2', 5);
  assert.equal(h.turn(), true);
  assert.deepEqual(h.ran, ['a1']);
  h.job(2, 'b1', 1);
  h.job(2, 'b2', 1);
  h.drain();
  // b starts at a's level after a1, so a2 (used 5) runs only after b has used as much: b1 and b2 first.
  assert.deepEqual(h.ran, ['a1', 'b1', 'b2', 'a2']);
});

test('a uid past the high water has its reading paused once a turn while jobs arrive, and resumed once at the low water', () => {
  const h = harness({ highWaterBytes: 10 });
  h.job(7, 'j1', 1, 6);
  assert.deepEqual(h.pauses, []);
  h.job(7, 'j2', 1, 6);
  // Read in the same turn as j2 (one read of the socket): the pause made for j2 stands, not walked again.
  h.job(7, 'j3', 1, 6);
  assert.deepEqual(h.pauses, ['pause 7']);
  h.turn(); // 12 bytes left: still above the low water (5)
  assert.deepEqual(h.pauses, ['pause 7']);
  h.turn(); // 6 left
  h.turn(); // 0 left
  assert.deepEqual(h.pauses, ['pause 7', 'resume 7']);
  assert.deepEqual(h.ran, ['j1', 'j2', 'j3']);
  assert.equal(h.queue.waitingJobs(7), 0);
});

test('a job that arrives while its uid is paused pauses it again, though below the high water: HTTP/2 reads on after its own writes', () => {
  const h = harness({ highWaterBytes: 10 });
  h.job(7, 'j1', 1, 6);
  h.job(7, 'j2', 1, 6);
  h.turn(); // 6 bytes left: below the high water (10), above the low water (5): still paused
  assert.deepEqual(h.pauses, ['pause 7']);
  // Read nonetheless (Node's session restarted reading after a write of its): the pause is made again.
  h.job(7, 'j3', 1, 1);
  assert.deepEqual(h.pauses, ['pause 7', 'pause 7']);
  h.job(7, 'j4', 1, 1);
  assert.deepEqual(h.pauses, ['pause 7', 'pause 7'], 'once a turn');
  h.drain();
  assert.deepEqual(h.pauses, ['pause 7', 'pause 7', 'resume 7']);
});

test('a uid past the high water of jobs waiting (tiny requests) is paused, runs on meanwhile, and is resumed at half of it', () => {
  const h = harness({ highWaterJobs: 4 });
  for (let i = 1; i <= 5; i++) h.job(7, `t${i}`, 1);
  h.job(8, 'other', 1);
  assert.deepEqual(h.pauses, ['pause 7']);
  h.turn(); // t1: 4 waiting, above the low water (2)
  h.turn(); // other
  assert.deepEqual(h.ran, ['t1', 'other']);
  assert.deepEqual(h.pauses, ['pause 7']);
  h.turn(); // t2: 3 waiting
  h.turn(); // t3: 2 waiting
  assert.deepEqual(h.pauses, ['pause 7', 'resume 7']);
  h.drain();
  assert.deepEqual(h.ran, ['t1', 'other', 't2', 't3', 't4', 't5']);
  assert.throws(() => harness({ highWaterJobs: 1, lowWaterJobs: 1 }), /lowWaterJobs must be ≥ 0 and below highWaterJobs \(1\), got 1/);
});

test('a job that throws is reported and the others run on', () => {
  const h = harness();
  h.queue.push(1, 1, () => {
    throw new Error('boom');
  });
  h.job(1, 'after', 1);
  h.drain();
  assert.deepEqual(h.ran, ['error', 'after']);
});

test('cheap jobs share a turn until it has used its millisecond; a costly one ends its turn alone', () => {
  const h = harness();
  for (let i = 1; i <= 6; i++) h.job(1, `cheap${i}`, 0.3);
  h.job(2, 'costly', 7);
  assert.equal(h.turn(), true);
  // Least served first: cheap1 (uid 1 and 2 level), costly (uid 2 had used nothing), then the turn is over.
  assert.deepEqual(h.ran, ['cheap1', 'costly']);
  assert.equal(h.turn(), true);
  // Four cheap jobs make 1.2 ms: the fourth is the last of the turn.
  assert.deepEqual(h.ran, ['cheap1', 'costly', 'cheap2', 'cheap3', 'cheap4', 'cheap5']);
  h.drain();
  assert.deepEqual(h.ran.slice(-1), ['cheap6']);
});

test('a uid whose backlog empties after every job (one bidi stream, its next message read after the turn) pays for each job', () => {
  const h = harness();
  for (let i = 1; i <= 4; i++) h.job(2, `flood${i}`, 7);
  let streamed = 0;
  const streamNext = (): void => {
    streamed++;
    h.job(1, `stream${streamed}`, 7);
  };
  streamNext();
  for (let i = 0; i < 8 && h.turn(); i++) {
    // grpc-js delivers a stream's next message only once the handler took the last one: after the turn that ran it.
    if (h.ran.at(-1)?.startsWith('stream')) streamNext();
  }
  assert.deepEqual(h.ran, ['flood1', 'stream1', 'flood2', 'stream2', 'flood3', 'stream3', 'flood4', 'stream4']);
});

test('a job of a uid that pushes the uid\'s next job while it runs still counts against that uid', () => {
  const h = harness();
  for (let i = 1; i <= 3; i++) h.job(2, `flood${i}`, 7);
  let left = 3;
  const chained = (): void =>
    h.queue.push(1, 1, () => {
      h.ran.push(`chain${4 - left}`);
      if (--left > 0) chained();
      h.now(7);
    });
  chained();
  h.drain();
  assert.deepEqual(h.ran, ['flood1', 'chain1', 'flood2', 'chain2', 'flood3', 'chain3']);
});

test('of thousands of uids that used as much, the one waiting longest goes first, whatever their uids', () => {
  const h = harness();
  // Uids that start waiting in an order unrelated to their number, each with two jobs of the same cost (a binary
  // fraction of a millisecond, so the costs add up exactly).
  const uids = Array.from({ length: 2_000 }, (_, i) => (i * 7919) % 2_000);
  for (const uid of uids) {
    h.job(uid, `${uid}a`, 0.25);
    h.job(uid, `${uid}b`, 0.25);
  }
  h.drain();
  assert.deepEqual(h.ran, [...uids.map((uid) => `${uid}a`), ...uids.map((uid) => `${uid}b`)]);
});
