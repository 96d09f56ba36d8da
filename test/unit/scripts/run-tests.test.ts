/**
 * scripts/run-tests.mjs, the runner behind `npm test` and `node scripts/run-tests.mjs <path-substring>`, run on a
 * stand-in tree (a stub bundler, two tiny test files) so that what it would run is seen without running the suite.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { running } from '../../support/process-running.js';
import { tempDir } from '../../support/server-kit.js';

const RUNNER = path.join(packageRoot, 'scripts', 'run-tests.mjs');

/** A tree run-tests.mjs works in (its cwd): each test file, when run, leaves a file named after it in `ran/`. */
function standInTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'scripts'));
  fs.writeFileSync(path.join(dir, 'scripts', 'bundle.mjs'), '');
  fs.mkdirSync(path.join(dir, 'ran'));
  for (const name of ['alpha', 'beta']) {
    const file = path.join(dir, 'dist', 'test', `${name}.test.js`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `require('node:fs').writeFileSync(${JSON.stringify(path.join(dir, 'ran', name))}, '');\n`);
  }
}

/** The runner as a shell starts it: under `node --test` itself, the child would inherit the parent's test context. */
function runTests(dir: string, args: string[]): SpawnSyncReturns<string> {
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  return spawnSync(process.execPath, [RUNNER, ...args], { cwd: dir, encoding: 'utf8', env });
}

function ran(dir: string): string[] {
  return fs.readdirSync(path.join(dir, 'ran')).sort();
}

test('a path substring runs only the test files whose path holds it', (t) => {
  const { dir, cleanup } = tempDir('meshid-run-tests-');
  t.after(cleanup);
  standInTree(dir);
  const r = runTests(dir, ['beta']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.deepEqual(ran(dir), ['beta']);
});

test('a path substring no test file holds (a typo, --help) is refused on stderr, running nothing rather than everything', (t) => {
  const { dir, cleanup } = tempDir('meshid-run-tests-');
  t.after(cleanup);
  standInTree(dir);
  for (const arg of ['btea', '--help']) {
    const r = runTests(dir, [arg]);
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`no test file under dist/test has a path holding ${arg}`));
    assert.deepEqual(ran(dir), [], `${arg}: nothing runs`);
  }
});

test('a failing test is named again, with its error, after the totals, where a CI log cut to its last lines shows it', (t) => {
  const { dir, cleanup } = tempDir('meshid-run-tests-');
  t.after(cleanup);
  standInTree(dir);
  fs.writeFileSync(
    path.join(dir, 'dist', 'test', 'gamma.test.js'),
    "require('node:test').test('gamma checks its answer', () => { throw new Error('the answer was 41'); });\n",
  );
  const r = runTests(dir, []);
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const totals = r.stdout.lastIndexOf('fail 1');
  assert.ok(totals >= 0, r.stdout);
  const after = r.stdout.slice(totals);
  assert.match(after, /failing tests/);
  assert.match(after, /gamma checks its answer/);
  assert.match(after, /the answer was 41/);
});

test('a process a test file started and left behind (as a file killed at the time limit leaves its server) is ended when the run ends', async (t) => {
  const { dir, cleanup } = tempDir('meshid-run-tests-');
  t.after(cleanup);
  standInTree(dir);
  const pidFile = path.join(dir, 'orphan.pid');
  fs.writeFileSync(
    path.join(dir, 'dist', 'test', 'delta.test.js'),
    `const child = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
child.unref();
require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(child.pid));
`,
  );
  const r = runTests(dir, ['delta']);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  t.after(() => {
    if (running(pid)) process.kill(pid, 'SIGKILL');
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  // SIGKILL is sent before the runner exits; its delivery is not instant.
  for (let i = 0; i < 200 && running(pid); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(running(pid), false, 'the left-behind process still runs after the run ended');
});
