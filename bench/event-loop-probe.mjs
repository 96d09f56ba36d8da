// Preloaded into a benchmarked process (node --import): every 100 ms, appends the longest event-loop delay of those
// 100 ms to the file named by MESHID_BENCH_EVENT_LOOP_FILE, one "<epoch ms> <max delay ms>" line each.
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.MESHID_BENCH_EVENT_LOOP_FILE;
if (file) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  setInterval(() => {
    fs.appendFileSync(file, `${Date.now()} ${(h.max / 1e6).toFixed(1)}\n`);
    h.reset();
  }, 100).unref();
}
