/**
 * What `meshid-server run --help` and `meshid-agent run --help` (and `validate`, which shares the flags) say about
 * settings that come from more than the flag.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RUN_FLAGS as SERVER_RUN_FLAGS, serverConfigFrom } from '../../../src/server/cli/run-config.js';
import { RUN_FLAGS as AGENT_RUN_FLAGS, agentConfigFrom } from '../../../src/agent/cli/run-config.js';
import type { FlagSpec } from '../../../src/common/cli/args.js';

test('run --help of either daemon names MESHID_LOG_LEVEL, which sets the log level when the flag and config do not', () => {
  for (const flags of [SERVER_RUN_FLAGS, AGENT_RUN_FLAGS]) {
    assert.match(flags.find((f) => f.name === 'log-level')!.description, /\$MESHID_LOG_LEVEL/);
  }
});

/** The flags whose help names a default value, with that value: `(default 24h)`, `default 5m,`. */
function documentedDefaults(flags: readonly FlagSpec[]): [string, string][] {
  return flags.flatMap((f) => {
    const m = /\bdefault ([^\s),]+)/.exec(f.description);
    return m === null ? [] : [[f.name, m[1]!] as [string, string]];
  });
}

test('run --help of the server shows the defaults the server runs with: giving each shown value changes nothing', () => {
  const base = ['--trust-domain', 'example.org'];
  const shown = documentedDefaults(SERVER_RUN_FLAGS);
  assert.deepEqual(shown.map(([name]) => name).sort(), [
    'admin-socket', 'bind-address', 'bundle-endpoint-refresh-hint', 'ca-key-type', 'data-dir', 'datacenter', 'default-jwt-svid-ttl',
    'default-x509-svid-ttl', 'intermediate-ttl', 'join-token-ttl', 'root-ttl',
  ]);
  const defaults = serverConfigFrom(base, {});
  for (const [name, value] of shown) {
    assert.deepEqual(serverConfigFrom([...base, `--${name}`, value], {}), defaults, `--${name} ${value}`);
  }
});

test('run --help of the agent shows the defaults the agent runs with: giving each shown value changes nothing', () => {
  const base = ['--server-address', 'meshid-server:8081'];
  const shown = documentedDefaults(AGENT_RUN_FLAGS);
  assert.deepEqual(shown.map(([name]) => name).sort(), ['data-dir', 'socket-path']);
  const defaults = agentConfigFrom(base, {});
  for (const [name, value] of shown) {
    assert.deepEqual(agentConfigFrom([...base, `--${name}`, value], {}), defaults, `--${name} ${value}`);
  }
});

test('the log level help names the order it is taken in, and the level used when none is given', () => {
  for (const flags of [SERVER_RUN_FLAGS, AGENT_RUN_FLAGS]) {
    assert.equal(flags.find((f) => f.name === 'log-level')!.description, 'Log level (default: log_level in --config, else $MESHID_LOG_LEVEL, else info)');
  }
  assert.equal(serverConfigFrom(['--trust-domain', 'example.org'], {})!.logLevel, 'info');
});
