import { createRequire } from 'node:module';
import path from 'node:path';
import v8 from 'node:v8';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { Logger } from '../log.js';
import { fullGc } from './full-gc.js';
import { packageRoot } from '../paths.js';

/** The glibc controls of native/malloc (see malloc.c), and its memory-reducing V8 GC (v8-heap.cc). */
export interface NativeHeap {
  trim(): boolean;
  setMmapThreshold(bytes: number): boolean;
  /** Absent from an addon built before it was added: the quiet collection is then fullGc's plain one alone. */
  collectAllGarbage?(): boolean;
}

export const NATIVE_HEAP_ADDON = path.join(packageRoot, 'native', 'malloc', 'build', 'Release', 'malloc.node');

/** Transient buffers at least this big (gRPC messages, journal chunks) get their own mapping, released on free. */
const MMAP_THRESHOLD = 128 * 1024;
/** After a major GC, wait this long for V8 to finish freeing (weak callbacks run in later ticks), then trim. */
const TRIM_DELAY_MS = 1000;
/**
 * After V8's last major GC, how long the agent may go without another before it collects once itself (see
 * startNativeHeapTrimming). V8's memory reducer looks every 8 s.
 */
export const QUIET_COLLECT_MS = 10_000;
/**
 * The young generation's size (both semi-spaces) above which the quiet collection's plain GC left it at a burst's size:
 * V8 starts it at 1 MB and shrinks it back to that when it shrinks it at all; a signing burst grows it to 32 MB.
 */
export const YOUNG_GENERATION_KEPT_BYTES = 8 * 1024 * 1024;

/** V8's young generation (new space) as it is committed now, in bytes. */
function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** Taken when the quiet wait starts; tells when it ends whether the process was mostly idle meanwhile. */
export type IdleSince = () => boolean;

/** The event loop idle at least half of the time since this was called. */
function eventLoopIdleSince(): IdleSince {
  const start = performance.eventLoopUtilization();
  return () => performance.eventLoopUtilization(start).utilization < 0.5;
}

/** The addon, or undefined off Linux/glibc or when it was not built (memory is then simply not returned early). */
export function loadNativeHeap(): NativeHeap | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return createRequire(import.meta.url)(NATIVE_HEAP_ADDON) as NativeHeap;
  } catch {
    return undefined;
  }
}

/**
 * Keeps a long-running process's RSS near its live memory. The agent frees most native memory (keys, certificates,
 * message buffers) in bursts — signing 10,000 SVIDs, a mass rotation — and only when V8 collects the wrappers; glibc
 * keeps those freed pages mapped because live allocations made later sit above them (measured: 60-100 MB kept
 * after a 10,000-SVID sync). So large buffers go to their own mappings, and after every major GC the heap's free
 * pages are handed back (malloc_trim costs ~1 ms on such a heap; at most once per TRIM_DELAY_MS). Returns stop().
 *
 * The wrappers of a burst's last minutes are collected only by a later major GC, and V8 does not promise one: its
 * memory reducer, which should run one once the process is quiet, ran none in the 45 s after a 10,000-SVID burst in
 * every run of bench P5 on the slow VM (2026-12-02, this code and the thirty-first session's alike: RSS stayed at
 * its peak, 169-176 MB). So when QUIET_COLLECT_MS pass after one of V8's major GCs without another, the process runs
 * one full GC itself (`collect`, default fullGc), which the trim follows: 176 -> 158 MB in that run. After that plain
 * GC V8 shrinks the young generation only when its allocation rate over the last 5 s is low, which in a third to
 * a half of P5's runs it was not: the burst's 32 MB young generation stayed, and with it ~30 MB of RSS (P5 151-162
 * MB instead of 117-137; bench/HISTORY.md, the forty-fourth and forty-fifth sessions). So when the young generation
 * is still above YOUNG_GENERATION_KEPT_BYTES after it, the addon's memory-reducing GC follows (V8's
 * LowMemoryNotification, which always shrinks it: two mark-compacts, 0.2-0.6 s). Only then, not always: it also
 * sets the old generation's next limit ~15 MB lower than a plain GC does (the limit counts the young generation's
 * size, now 1 MB), so more of the next pushes pay a major GC; where the plain GC shrank the young generation,
 * nothing more is paid.
 * Not while the event loop was busy half of that time (the wait starts again), and its own GCs arm nothing: an idle
 * process is collected once after each burst, not every QUIET_COLLECT_MS, and a busy one gets V8's major GCs and
 * never this one.
 */
export function startNativeHeapTrimming(
  log: Logger,
  options: {
    heap?: NativeHeap | undefined;
    delayMs?: number;
    clock?: Clock;
    collect?: () => void;
    idle?: () => IdleSince;
    /** The young generation's size in bytes (default: V8's new space). */
    youngGeneration?: () => number;
  } = {},
): () => void {
  const heap = 'heap' in options ? options.heap : loadNativeHeap();
  if (heap === undefined) {
    log.debug('native heap addon not available; freed native memory is returned only as glibc sees fit');
    return () => undefined;
  }
  heap.setMmapThreshold(MMAP_THRESHOLD);
  const clock = options.clock ?? systemClock;
  let collect = options.collect;
  let pending: NodeJS.Timeout | undefined;
  let quiet: TimerHandle | undefined;
  let idleSince: IdleSince | undefined;
  /** performance.now() span of the full GC this process ran itself, if any: its GC entry re-arms nothing. */
  let own: { from: number; to: number } | undefined;
  const arm = (): void => {
    quiet?.cancel();
    idleSince = (options.idle ?? eventLoopIdleSince)();
    quiet = clock.setTimer(collectOnce, QUIET_COLLECT_MS);
  };
  const collectOnce = (): void => {
    quiet = undefined;
    // A GC entry is delivered a few ticks after the GC, later still on a busy event loop: a process still at work
    // (its major GCs not yet seen) waits again rather than pay a full GC in the middle of it.
    if (idleSince?.() === false) {
      arm();
      return;
    }
    collect ??= fullGc() ?? (() => undefined);
    const from = performance.now();
    collect();
    const young = heap.collectAllGarbage === undefined ? 0 : (options.youngGeneration ?? youngGenerationBytes)();
    if (young > YOUNG_GENERATION_KEPT_BYTES) {
      const reducingFrom = performance.now();
      heap.collectAllGarbage?.();
      // At most once per burst; debug, because it is what one asks only when RSS at rest looks high (P5's two modes).
      log.debug(
        { youngGenerationMb: Math.round(young / (1024 * 1024)), gcMs: Math.round(performance.now() - reducingFrom) },
        'the young generation kept its burst size after the quiet GC: ran a memory-reducing GC',
      );
    }
    own = { from, to: performance.now() };
  };
  const observer = new PerformanceObserver((list) => {
    const majors = list
      .getEntries()
      .filter((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR);
    if (majors.length === 0) return;
    if (majors.some((e) => own === undefined || e.startTime < own.from || e.startTime > own.to)) arm();
    if (pending !== undefined) return;
    pending = setTimeout(() => {
      pending = undefined;
      heap.trim();
    }, options.delayMs ?? TRIM_DELAY_MS);
    pending.unref();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    observer.disconnect();
    if (pending !== undefined) clearTimeout(pending);
    quiet?.cancel();
  };
}
