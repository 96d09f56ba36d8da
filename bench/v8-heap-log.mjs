// A preload for a diagnostic agent run (bench/p5-diag.ts passes it with --import): every second, and at each major
// GC, a `V8HEAP {json}` line on stderr with process.memoryUsage() and V8's spaces ([size, used, physical] in KB).
import v8 from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';
const line = (o) => process.stderr.write(`V8HEAP ${JSON.stringify({ t: Date.now(), ...o })}\n`);
const sample = () => {
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, [Math.round(s.space_size / 1024), Math.round(s.space_used_size / 1024), Math.round(s.physical_space_size/1024)]]));
  const h = v8.getHeapStatistics();
  line({ kind: 'mem', rss: m.rss >> 10, heapTotal: m.heapTotal >> 10, heapUsed: m.heapUsed >> 10, external: m.external >> 10, ab: m.arrayBuffers >> 10, phys: h.total_physical_size >> 10, malloced: h.malloced_memory >> 10, limit: h.heap_size_limit >> 10, spaces });
};
setInterval(sample, 1000).unref();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const d = e.detail ?? {};
    if (d.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      const h = v8.getHeapStatistics();
      line({ kind: 'major', start: Math.round(performance.timeOrigin + e.startTime), dur: Math.round(e.duration), flags: d.flags, used: h.used_heap_size >> 10, total: h.total_heap_size >> 10, phys: h.total_physical_size >> 10 });
    }
  }
}).observe({ entryTypes: ['gc'] });
