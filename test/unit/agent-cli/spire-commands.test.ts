/** spire-agent commands meshid-agent has not, run on the executable: they say what to do instead, not "unknown". */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_MAIN } from '../../support/cluster.js';
import { runNode } from '../../support/server-process.js';

test('meshid-agent logger and debug (spire-agent 1.15 commands) say what to do instead, with exit 1', async () => {
  const logger = await runNode(AGENT_MAIN, ['logger', 'set', '-level', 'debug']);
  assert.equal(logger.code, 1);
  assert.match(logger.err, /^Error: InvalidArgument: meshid-agent has no "logger" command: the log level is set when the agent starts \(--log-level/);
  const debug = await runNode(AGENT_MAIN, ['debug', 'getinfo']);
  assert.equal(debug.code, 1);
  assert.match(debug.err, /^Error: InvalidArgument: meshid-agent has no "debug" command: meshid-agent has no debug API: `healthcheck`/);
  assert.match((await runNode(AGENT_MAIN, ['constructor'])).err, /unknown command "meshid-agent constructor"/);
});
