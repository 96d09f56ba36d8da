import { createRequire } from 'node:module';
import path from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { packageRoot } from '../paths.js';

/** The glibc controls of native/malloc (see malloc.c). */
export interface NativeHeap {
  trim(): boolean;
  setMmapThreshold(bytes: number): boolean;
}

export const NATIVE_HEAP_ADDON = path.join(packageRoot, 'native', 'malloc', 'build', 'Release', 'malloc.node');

/** Transient buffers at least this big (gRPC messages, journal chunks) get their own mapping, released on free. */
const MMAP_THRESHOLD = 128 * 1024;
/** After a major GC, wait this long for V8 to finish freeing (weak callbacks run in later ticks), then trim. */
const TRIM_DELAY_MS = 1000;

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
 */
export function startNativeHeapTrimming(log: Logger, options: { heap?: NativeHeap | undefined; delayMs?: number } = {}): () => void {
  const heap = 'heap' in options ? options.heap : loadNativeHeap();
  if (heap === undefined) {
    log.debug('native heap addon not available; freed native memory is returned only as glibc sees fit');
    return () => undefined;
  }
  heap.setMmapThreshold(MMAP_THRESHOLD);
  let pending: NodeJS.Timeout | undefined;
  const observer = new PerformanceObserver((list) => {
    if (pending !== undefined) return;
    const major = list.getEntries().some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR);
    if (!major) return;
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
  };
}
