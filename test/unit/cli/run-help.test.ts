/**
 * What `meshid-server run --help` and `meshid-agent run --help` (and `validate`, which shares the flags) say about
 * settings that come from more than the flag.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RUN_FLAGS as SERVER_RUN_FLAGS } from '../../../src/server/cli/run-config.js';
import { RUN_FLAGS as AGENT_RUN_FLAGS } from '../../../src/agent/cli/run-config.js';

test('run --help of either daemon names MESHID_LOG_LEVEL, which sets the log level when the flag and config do not', () => {
  for (const flags of [SERVER_RUN_FLAGS, AGENT_RUN_FLAGS]) {
    assert.match(flags.find((f) => f.name === 'log-level')!.description, /\$MESHID_LOG_LEVEL/);
  }
});
