/**
 * A test file that node --test ends at --test-timeout gets a SIGTERM, and none of its hooks run: the meshid-server
 * and meshid-agent it started through test/support must stop with it (test/support/tethered-daemon), not serve on
 * until scripts/run-tests.mjs ends the whole run's process group.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/common/paths.js';
import { running } from '../support/process-running.js';
import { tempDir } from '../support/server-kit.js';

const HUNG_FILE = path.join(packageRoot, 'dist/test/support/hung-test-file.js');
/** The fixture's time limit: long enough for a loaded machine to start a server and an agent first. */
const LIMIT_MS = 30_000;

test('the server and agent a test file started stop as soon as the runner kills the file at its time limit', async (t) => {
  const { dir, cleanup } = tempDir('meshid-timed-out-file-');
  const pidFile = path.join(dir, 'pids.json');
  const pids: number[] = [];
  t.after(() => {
    for (const pid of pids) if (running(pid)) process.kill(pid, 'SIGKILL');
    cleanup();
  });
  // As a shell starts it: under node --test itself, the runner would inherit this file's test context and run nothing.
  // TMPDIR: the fixture's cluster dir, which nothing of the killed file removes, lands in ours.
  const env: NodeJS.ProcessEnv = { ...process.env, MESHID_TEST_PID_FILE: pidFile, TMPDIR: dir };
  delete env['NODE_TEST_CONTEXT'];
  const runner = spawn(process.execPath, ['--test', '--test-reporter=spec', `--test-timeout=${LIMIT_MS}`, HUNG_FILE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  runner.stdout.on('data', (d: Buffer) => (output += d.toString()));
  runner.stderr.on('data', (d: Buffer) => (output += d.toString()));
  // A bound on a runner that would not end, not a timing under test.
  const bound = setTimeout(() => runner.kill('SIGKILL'), LIMIT_MS + 60_000);
  await once(runner, 'exit');
  clearTimeout(bound);

  assert.match(output, new RegExp(`timed out after ${LIMIT_MS}ms`), output);
  assert.ok(fs.existsSync(pidFile), `the fixture did not start its server and agent within ${LIMIT_MS} ms:\n${output}`);
  const started = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as { server: number; agent: number };
  pids.push(started.server, started.agent);
  // A daemon told its stdin ended stops cleanly (streams ended, state saved), which takes a moment; one left serving
  // would run for as long as the run goes on. The bound tells those apart, it measures nothing.
  for (let i = 0; i < 200 && pids.some(running); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(running(started.server), false, 'the meshid-server of the killed file still runs');
  assert.equal(running(started.agent), false, 'the meshid-agent of the killed file still runs');
});
