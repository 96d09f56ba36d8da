// A preload for a diagnostic agent run (MESHID_BENCH_AGENT_NODE_ARGS=--import=file:///…/bench/gc-log.mjs with bench P3 or
// p5-diag): a `GCLOG {json}` line on stderr for every GC Node reports (minor, major, incremental, weakcb): wall-clock
// start, duration, flags (32: V8's memory reducer), and after a major GC the young, old and code spaces ([size, used] KB).
import v8 from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';
const K = { [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incr', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const d = e.detail ?? {};
    const o = { k: K[d.kind] ?? d.kind, t: Math.round(performance.timeOrigin + e.startTime), dur: Math.round(e.duration * 10) / 10, f: d.flags };
    if (d.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      const s = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, [x.space_size >> 10, x.space_used_size >> 10]]));
      o.newKB = s.new_space; o.oldKB = s.old_space; o.codeKB = s.code_space;
    }
    process.stderr.write(`GCLOG ${JSON.stringify(o)}\n`);
  }
}).observe({ entryTypes: ['gc'] });
