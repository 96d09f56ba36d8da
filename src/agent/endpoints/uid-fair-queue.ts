/**
 * Turns of the event loop shared fairly between the uids connected to the agent socket.
 *
 * Every uid has its own FIFO of jobs (decoding a request and running its handler, see fair-decoding.ts). The queue
 * shares time, not turns: it counts the time each uid's jobs took and always runs next the job of the waiting uid that
 * has used the least (a uid that had nothing waiting starts level with the least-served waiting one, so it cannot
 * save up time while idle, nor shed what it used: a uid whose backlog empties with every job it runs, as a stream's
 * does when its next message is read only after the last one was handled, comes back with the time it used). A request costing 7 ms to decode and a FetchX509SVID costing 0.1 ms do not get one turn
 * each: the cheap uid's jobs run until they have used as much as the other's one. However much one uid sends,
 * another uid's request waits for at most the one job already running and its own share; the flooding uid only
 * delays itself.
 *
 * Jobs run in turns of the event loop (setImmediate) of about a millisecond each (TURN_BUDGET_MS): the microtasks a
 * job leaves behind (an async handler's awaits, which send its answer) run when its turn ends, and sockets are read
 * between turns so a request that arrived meanwhile competes for the next one. Measured with a uid flooding 7 ms
 * requests, turns of several such jobs kept another uid's FetchX509SVID answers waiting behind them (p50 46 ms
 * instead of 4 ms); a job that costly ends its turn alone.
 *
 * A uid's waiting requests also hold memory (their bytes, not yet decoded). Past `highWaterBytes` the queue asks for
 * that uid's connections to stop being read, and once the backlog is down to `lowWaterBytes` for them to be read
 * again: the uid's clients slow down (HTTP/2 flow control holds them) but no call fails. The queue keeps working on
 * the paused uid all along, so pausing never idles the agent.
 *
 * A flood of tiny requests never holds that many bytes, yet reading and framing them and grpc-js's setup of each call
 * happen before the queue, at full speed. So the number of jobs waiting pauses a uid too: past `highWaterJobs` its
 * connections stop being read until its backlog is down to `lowWaterJobs` jobs (and to `lowWaterBytes`). A uid that
 * runs far ahead of its share stops costing the agent anything before its turn, while its own jobs run on.
 */

import { MinHeap, type HeapItem } from './min-heap.js';

export interface ReadPauser {
  /**
   * Stop reading this uid's connections. Called again, once a turn, when jobs arrive while the uid is paused: a job
   * that arrives was read, because Node's HTTP/2 session, which stops reading by itself while a write of its is in
   * progress, starts reading again once that write is done, whoever else stopped it meanwhile.
   */
  pauseReading(uid: number): void;
  resumeReading(uid: number): void;
}

export interface UidFairQueueOptions {
  pauser: ReadPauser;
  /** Reports a job that threw; jobs should not throw, and the others run on regardless. */
  onJobError(error: unknown): void;
  /** Default DEFAULT_HIGH_WATER_BYTES. */
  highWaterBytes?: number;
  /** Default half of highWaterBytes. */
  lowWaterBytes?: number;
  /** Default DEFAULT_HIGH_WATER_JOBS. */
  highWaterJobs?: number;
  /** Default half of highWaterJobs. */
  lowWaterJobs?: number;
  /** A monotonic clock in ms; default performance.now. It measures the time jobs take, not time of day. */
  now?: () => number;
  /** Runs the next job after pending I/O; default setImmediate. */
  defer?: (run: () => void) => void;
}

/**
 * Far above one uid's normal backlog: Istio runs every sidecar of a node as one uid, and 100 Envoys each sending their
 * ~90 KB Node with two requests at once during a rotation is 18 MB; even then the uid's work goes on at full speed,
 * only its reading waits.
 */
export const DEFAULT_HIGH_WATER_BYTES = 64 * 1024 * 1024;

/**
 * Above one uid's burst: Istio's ~110 sidecars of a node, one uid, each acknowledging a rotation on its few SDS streams
 * at once, are ~330 requests. 512 tiny jobs (~0.1 ms each) are ~50 ms of work ahead of the uid's share.
 */
export const DEFAULT_HIGH_WATER_JOBS = 512;

const MIN_JOB_COST_MS = 0.001;

/** Idle uids remembered before the first sweep of those `level` has passed. */
const MIN_IDLE_SWEEP = 64;

/**
 * How long one turn runs jobs before it lets the event loop go round (sockets read, the answers of the jobs run so far
 * sent). One job per turn cost every request a loop iteration: 64 clients of one uid saw their p99 first message ~15 %
 * later (P2). A job costing more than this (a request of thousands of values to decode) still ends its turn alone.
 */
const TURN_BUDGET_MS = 1;

interface Job {
  readonly bytes: number;
  readonly run: () => void;
}

interface UidBacklog extends HeapItem {
  readonly uid: number;
  /** When the uid last started waiting (a count): of uids that used as much, the one waiting longest goes first. */
  readonly since: number;
  readonly jobs: Job[];
  bytes: number;
  paused: boolean;
  /** The turn (UidFairQueue.turns) in which its reading was last paused: once a turn is enough (push). */
  pausedInTurn: number;
  /** Time this uid's jobs used, counted from the level it started at when it last had work waiting. */
  used: number;
}

export class UidFairQueue {
  /** Uids with jobs waiting. */
  private readonly waiting = new Map<number, UidBacklog>();
  /**
   * The same backlogs, least served first. A scan of `waiting` cost ~30 µs a job with 10,000 uids waiting (a uid per
   * pod where every pod runs as its own, all rotating at once); the heap costs O(log n).
   */
  private readonly leastServed = new MinHeap<UidBacklog>((a, b) => a.used < b.used || (a.used === b.used && a.since < b.since));
  /** Counts the times a uid started waiting: each backlog's `since`. */
  private waitsStarted = 0;
  /** The `used` of the last job started: where a uid that starts waiting is placed. */
  private level = 0;
  /**
   * The `used` of uids whose backlog emptied while it was above `level`: a uid that starts waiting again is placed
   * there, not at `level`, or each job that emptied its backlog would go uncounted. Entries `level` has passed say
   * nothing more and are swept (sweepIdle).
   */
  private readonly idleUsed = new Map<number, number>();
  private sweepIdleAt = MIN_IDLE_SWEEP;
  private readonly pauser: ReadPauser;
  private readonly onJobError: (error: unknown) => void;
  private readonly highWaterBytes: number;
  private readonly lowWaterBytes: number;
  private readonly highWaterJobs: number;
  private readonly lowWaterJobs: number;
  private readonly now: () => number;
  private readonly defer: (run: () => void) => void;
  private scheduled = false;
  /** Turns run so far (runNext). */
  private turns = 0;
  private closingFlag = false;

  constructor(options: UidFairQueueOptions) {
    this.pauser = options.pauser;
    this.onJobError = options.onJobError;
    this.highWaterBytes = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.lowWaterBytes = options.lowWaterBytes ?? Math.floor(this.highWaterBytes / 2);
    if (!(this.lowWaterBytes >= 0 && this.lowWaterBytes < this.highWaterBytes)) {
      throw new Error(`lowWaterBytes must be ≥ 0 and below highWaterBytes (${this.highWaterBytes}), got ${this.lowWaterBytes}`);
    }
    this.highWaterJobs = options.highWaterJobs ?? DEFAULT_HIGH_WATER_JOBS;
    this.lowWaterJobs = options.lowWaterJobs ?? Math.floor(this.highWaterJobs / 2);
    if (!(this.lowWaterJobs >= 0 && this.lowWaterJobs < this.highWaterJobs)) {
      throw new Error(`lowWaterJobs must be ≥ 0 and below highWaterJobs (${this.highWaterJobs}), got ${this.lowWaterJobs}`);
    }
    this.now = options.now ?? (() => performance.now());
    this.defer = options.defer ?? ((run) => setImmediate(run));
  }

  /** Queues `run` as one job of `uid` holding `bytes` until it runs. */
  push(uid: number, bytes: number, run: () => void): void {
    let backlog = this.waiting.get(uid);
    if (backlog === undefined) {
      backlog = {
        uid,
        since: this.waitsStarted++,
        jobs: [],
        bytes: 0,
        paused: false,
        pausedInTurn: -1,
        used: Math.max(this.level, this.idleUsed.get(uid) ?? this.level),
        heapIndex: -1,
      };
      this.idleUsed.delete(uid);
      this.waiting.set(uid, backlog);
      this.leastServed.push(backlog);
    }
    backlog.jobs.push({ bytes, run });
    backlog.bytes += bytes;
    // Paused already and yet read (ReadPauser): paused again, or the uid is read on until its next high water. Once a
    // turn: a pause walks all the uid's connections (up to max_connections_per_uid), and one read can bring a
    // thousand small requests; reading restarts only when a write completes, so a request read later in the turn is
    // one more connection's, paused at the latest in the next turn.
    if (backlog.paused || backlog.bytes > this.highWaterBytes || backlog.jobs.length > this.highWaterJobs) {
      backlog.paused = true;
      if (backlog.pausedInTurn !== this.turns) {
        backlog.pausedInTurn = this.turns;
        this.pauser.pauseReading(uid);
      }
    }
    this.schedule();
  }

  /**
   * From now on the jobs still to run are told the queue is closing (`closing`): the endpoint is shutting down, and a
   * call whose handler started now would have missed the handlers' close and hold the shutdown open.
   */
  close(): void {
    this.closingFlag = true;
  }

  get closing(): boolean {
    return this.closingFlag;
  }

  /** Jobs waiting for `uid` (for tests and diagnostics). */
  waitingJobs(uid: number): number {
    return this.waiting.get(uid)?.jobs.length ?? 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.defer(() => this.runNext());
  }

  /** Runs jobs, least served uid first, until the turn has used TURN_BUDGET_MS; the rest wait for the next turn. */
  private runNext(): void {
    this.scheduled = false;
    this.turns++;
    const turnStarted = this.now();
    let jobEnded: number;
    do {
      const next = this.leastServed.peek();
      if (next === undefined) return;
      jobEnded = this.runOne(next);
    } while (jobEnded - turnStarted < TURN_BUDGET_MS);
    if (this.waiting.size > 0) this.schedule();
  }

  /** Runs the next job of `backlog`; returns when it ended, by which runNext judges the turn (a clock read costs ~0.06 µs). */
  private runOne(backlog: UidBacklog): number {
    const uid = backlog.uid;
    const job = backlog.jobs.shift() as Job;
    backlog.bytes -= job.bytes;
    if (backlog.paused && backlog.bytes <= this.lowWaterBytes && backlog.jobs.length <= this.lowWaterJobs) {
      backlog.paused = false;
      backlog.pausedInTurn = -1;
      this.pauser.resumeReading(uid);
    }
    this.level = backlog.used;
    const started = this.now();
    try {
      job.run();
    } catch (error) {
      this.onJobError(error);
    }
    const ended = this.now();
    // A floor, so that jobs too quick for the clock still take turns.
    backlog.used += Math.max(ended - started, MIN_JOB_COST_MS);
    // Only now: a job that queues the uid's next one while it runs (a stream's next message) adds to this backlog.
    if (backlog.jobs.length === 0) {
      this.waiting.delete(uid);
      this.leastServed.remove(backlog);
      this.idleUsed.set(uid, backlog.used);
      if (this.idleUsed.size >= this.sweepIdleAt) this.sweepIdle();
    } else {
      this.leastServed.update(backlog);
    }
    return ended;
  }

  /** Forgets the idle uids `level` has caught up with; as often as the map doubles, so it costs O(1) per job. */
  private sweepIdle(): void {
    for (const [uid, used] of this.idleUsed) if (used <= this.level) this.idleUsed.delete(uid);
    this.sweepIdleAt = Math.max(MIN_IDLE_SWEEP, 2 * this.idleUsed.size);
  }
}
