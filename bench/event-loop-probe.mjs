// Preloaded into a benchmarked process (node --import): every 100 ms, appends the longest event-loop delay of those
// 100 ms to the file named by MESHID_BENCH_EVENT_LOOP_FILE, one "<epoch ms> <max delay ms> <pid>" line each
// (the pid tells the server stopped at a restart from the one started).
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.MESHID_BENCH_EVENT_LOOP_FILE;
if (file) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  setInterval(() => {
    fs.appendFileSync(file, `${Date.now()} ${(h.max / 1e6).toFixed(1)} ${process.pid}\n`);
    h.reset();
  }, 100).unref();
}

// MESHID_BENCH_CPU_PROF=<dir> (node refuses --cpu-prof in NODE_OPTIONS): a V8 CPU profile of the whole process,
// written there as it exits. The in-thread inspector session answers synchronously, so this works in an exit handler.
const profileDir = process.env.MESHID_BENCH_CPU_PROF;
if (profileDir) {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) fs.writeFileSync(`${profileDir}/server-${process.pid}.cpuprofile`, JSON.stringify(res.profile));
    });
  });
}
