/**
 * The thread-relay a test starts (test/support/thread-relay.ts) stops when the test file's process dies, however it
 * dies: it would otherwise wait in accept() for good, one more process per killed or timed-out file, which nothing
 * but the end of the whole run (scripts/run-tests.mjs's kill of its group) would stop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../../src/common/paths.js';
import { publicTempDir } from '../../support/peer-process.js';
import { buildThreadRelay, threadRelaySkip as skip } from '../../support/thread-relay.js';

const HUNG_FILE = path.join(packageRoot, 'dist/test/support/hung-relay-file.js');

/**
 * Whether any thread of process `pid` runs. Not its /proc/<pid>/stat: that is the thread-group leader's, a zombie
 * once the relay's main thread has exited ('main-exits') while the process lives on in its worker.
 */
function threadsRun(pid: number): boolean {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).some((tid) => !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
  } catch {
    return false;
  }
}

test('a thread-relay waiting for its connection stops once the test file that started it is killed with SIGKILL', { skip }, async (t) => {
  const dir = publicTempDir('meshid-relay-tether-');
  const binary = path.join(dir, 'thread-relay');
  buildThreadRelay(binary);
  const pidFile = path.join(dir, 'relay.pid');
  let relayPid: number | undefined;
  // As a shell starts it: under node --test itself, the runner would inherit this file's test context and run nothing.
  const env: NodeJS.ProcessEnv = { ...process.env, MESHID_TEST_PID_FILE: pidFile, MESHID_RELAY_BINARY: binary, MESHID_RELAY_DIR: dir };
  delete env['NODE_TEST_CONTEXT'];
  const file = spawn(process.execPath, [HUNG_FILE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  file.stdout.on('data', (d: Buffer) => (output += d.toString()));
  file.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(file, 'exit');
  t.after(() => {
    if (file.exitCode === null && file.signalCode === null) file.kill('SIGKILL');
    if (relayPid !== undefined && threadsRun(relayPid)) process.kill(relayPid, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // Bounds on an external event, not timings under test.
  for (let i = 0; i < 600 && !fs.existsSync(pidFile) && file.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(fs.existsSync(pidFile), `the file did not start its relay:\n${output}`);
  relayPid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(threadsRun(relayPid));

  file.kill('SIGKILL');
  await exited;
  for (let i = 0; i < 200 && threadsRun(relayPid); i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(threadsRun(relayPid), false, 'the relay of the killed test file still runs');
});
