/**
 * A test file that hangs past the runner's time limit with the daemons it started through test/support/cluster still
 * serving, never stopping them: test/integration/timed-out-file-daemons.test.ts runs it under a short --test-timeout.
 * Once both serve, their pids go to the file MESHID_TEST_PID_FILE names. Not a *.test.js: run-tests.mjs never runs it.
 */
import { test } from 'node:test';
import fs from 'node:fs';
import { startClusterWithAgent } from './cluster.js';

test('hangs with a server and an agent serving', async () => {
  const { cluster, agent } = await startClusterWithAgent('meshid-hung-file-', []);
  fs.writeFileSync(process.env['MESHID_TEST_PID_FILE']!, JSON.stringify({ server: cluster.server.pid, agent: agent.child.pid }));
  await new Promise(() => setInterval(() => {}, 60_000));
});
