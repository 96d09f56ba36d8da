// Bundles the executables (scripts/bundle.mjs), then runs every compiled *.test.js under dist/test with Node's own test runner. Node 20's --test has no glob support,
// and given a directory it would also run the support files, so the list is collected here.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';

const filter = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js') && (filter.length === 0 || filter.some((f) => p.includes(f)))) files.push(p);
  }
})('dist/test');
files.sort();
// Given no file, node --test would look for tests itself, all over the checkout: a mistyped path (or --help) would run
// the whole suite instead of the file meant.
if (filter.length > 0 && files.length === 0) {
  process.stderr.write(`run-tests: no test file under dist/test has a path holding ${filter.join(' or ')}: give parts of test file paths, e.g. demo-start\n`);
  process.exit(2);
}
// The tests run the executables as shipped (dist/bin); after a bare `tsc` they would be older than dist/src.
const bundled = spawnSync(process.execPath, ['scripts/bundle.mjs'], { stdio: 'inherit' });
if (bundled.status !== 0) process.exit(bundled.status ?? 1);
// The spec reporter repeats every failure, with its error, after the totals: a CI log cut to its last lines still
// names what failed.
// A process group of its own: a test file that hits the time limit is killed alone, and the servers and agents it
// started (its children, in its group) live on as orphans, holding their temporary dirs and sockets. Whatever is left in
// the group once the run ends is such an orphan, and goes. (A test that starts a process group of its own, as
// demo-start does, stops it itself.)
const run = spawn(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-reporter-destination=stdout', '--test-concurrency=2', '--test-timeout=240000', ...files],
  { stdio: 'inherit', detached: true },
);
const killGroup = (signal) => {
  try {
    process.kill(-run.pid, signal);
  } catch {
    // ESRCH: nothing left in the group.
  }
};
// Out of the terminal's foreground group, the run no longer gets a Ctrl-C from it: passed on, as to a foreground job.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => killGroup(signal));
const [code] = await once(run, 'exit');
killGroup('SIGKILL');
process.exit(code ?? 1);
