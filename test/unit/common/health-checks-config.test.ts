/**
 * The `health_checks` block of both daemons' config files (SPIRE's names and defaults), read through each daemon's own
 * config reader and compile step as `run` and `validate` do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { compileAgentConfig, readAgentConfigFile } from '../../../src/agent/config.js';
import { compileServerConfig, readConfigFile } from '../../../src/server/config.js';
import { tempDir } from '../../support/server-kit.js';

/** Compiles `health_checks` as each daemon reads it from a file, returning both results (or throwing the first error). */
function bothDaemons(block: unknown): { agent: unknown; server: unknown } {
  const t = tempDir('meshid-health-config-');
  try {
    const agentFile = path.join(t.dir, 'agent.json');
    const serverFile = path.join(t.dir, 'server.json');
    fs.writeFileSync(agentFile, JSON.stringify({ server_address: 'server:8081', health_checks: block }));
    fs.writeFileSync(serverFile, JSON.stringify({ trust_domain: 'example.org', health_checks: block }));
    const agent = compileAgentConfig(readAgentConfigFile(agentFile)).healthChecks;
    const server = compileServerConfig(readConfigFile(serverFile)).healthChecks;
    return { agent, server };
  } finally {
    t.cleanup();
  }
}

function refusedByBoth(block: unknown, message: RegExp): void {
  for (const daemon of ['agent', 'server'] as const) {
    const t = tempDir('meshid-health-config-');
    try {
      const file = path.join(t.dir, `${daemon}.json`);
      const doc = daemon === 'agent' ? { server_address: 'server:8081', health_checks: block } : { trust_domain: 'example.org', health_checks: block };
      fs.writeFileSync(file, JSON.stringify(doc));
      assert.throws(
        () => (daemon === 'agent' ? compileAgentConfig(readAgentConfigFile(file)) : compileServerConfig(readConfigFile(file))),
        (err: Error & { code?: string }) => (err.code === 'invalid_argument' && message.test(err.message)) || assert.fail(`${daemon}: ${err.message}`),
      );
    } finally {
      t.cleanup();
    }
  }
}

test('health_checks is off unless listener_enabled is true; on, SPIRE\'s defaults: localhost, port 80, /live and /ready', () => {
  assert.equal(compileAgentConfig({ server_address: 'a:1' }).healthChecks, undefined);
  assert.equal(compileServerConfig({ trust_domain: 'example.org' }).healthChecks, undefined);
  assert.deepEqual(bothDaemons({ bind_port: 8080 }), { agent: undefined, server: undefined });
  const defaults = { bindAddress: 'localhost', bindPort: 80, livePath: '/live', readyPath: '/ready' };
  assert.deepEqual(bothDaemons({ listener_enabled: true }), { agent: defaults, server: defaults });
});

test('bind_port is taken as SPIRE writes it (a string) or as a number; addresses and paths as given', () => {
  const expected = { bindAddress: '0.0.0.0', bindPort: 8080, livePath: '/healthz/live', readyPath: '/healthz/ready' };
  const block = { listener_enabled: true, bind_address: '0.0.0.0', live_path: '/healthz/live', ready_path: '/healthz/ready' };
  assert.deepEqual(bothDaemons({ ...block, bind_port: '8080' }), { agent: expected, server: expected });
  assert.deepEqual(bothDaemons({ ...block, bind_port: 8080 }), { agent: expected, server: expected });
  assert.equal((bothDaemons({ listener_enabled: true, bind_address: '[::1]', bind_port: 0 }).agent as { bindAddress: string }).bindAddress, '::1');
  // A host name bind_address takes (an "_" as in SRV-style names) is taken here too: one rule for the one listener.
  assert.equal((bothDaemons({ listener_enabled: true, bind_address: 'health_probe.internal', bind_port: 0 }).server as { bindAddress: string }).bindAddress, 'health_probe.internal');
});

test('a bad port, a path without its leading slash, or an address with a port are refused naming the key and the fix', () => {
  for (const port of ['http', '80a', '70000', -1, 1.5, '']) {
    refusedByBoth({ listener_enabled: true, bind_port: port }, /^health_checks\.bind_port .* is not a port number: use 1 to 65535 \(e\.g\. "8080"\), or 0 for a free port named in the log$/);
  }
  refusedByBoth({ listener_enabled: true, live_path: 'live' }, /^health_checks\.live_path "live" must start with "\/" \(e\.g\. "\/live"\)$/);
  refusedByBoth({ listener_enabled: true, ready_path: 'ready' }, /^health_checks\.ready_path "ready" must start with "\/" \(e\.g\. "\/ready"\)$/);
  refusedByBoth({ listener_enabled: true, ready_path: '/ready?x=1' }, /^health_checks\.ready_path "\/ready\?x=1" is not a plain URL path: .* without spaces, "\?" or "#"/);
  refusedByBoth({ listener_enabled: true, live_path: '/h', ready_path: '/h' }, /both "\/h": give each a path of its own/);
  refusedByBoth({ listener_enabled: true, bind_address: '127.0.0.1:8080' }, /^health_checks\.bind_address "127\.0\.0\.1:8080" holds a port: give the address alone and the port in health_checks\.bind_port$/);
  refusedByBoth({ listener_enabled: true, bind_address: 'http://localhost' }, /is not an IP address or host name/);
  // All digits and dots but no IPv4 address: the listener's HOST:PORT rule refuses it, and the error was its, naming
  // health_checks.bind_port and a "HOST:PORT" nobody wrote (server) or nothing at all until the bind (agent).
  for (const numeric of ['0', '10.1.2']) {
    refusedByBoth({ listener_enabled: true, bind_address: numeric }, /^health_checks\.bind_address ".*" is not an IP address or host name/);
  }
  // Checked when off too: the mistake shows before the day the listener is switched on.
  refusedByBoth({ bind_port: 'eighty' }, /health_checks\.bind_port "eighty" is not a port number/);
});

test('an unknown key or a wrong type in health_checks is refused naming the block and the known keys', () => {
  refusedByBoth({ listener_enabled: true, bind_prot: 8080 }, /: health_checks: unknown key "bind_prot" \(did you mean "bind_port"\?\)$/);
  refusedByBoth({ listener_enabled: true, livePath: '/l' }, /: health_checks: unknown key "livePath" \(did you mean "live_path"\?\)$/);
  refusedByBoth({ listener_enabled: true, colour: 'blue' }, /: health_checks: unknown key "colour" \(known: listener_enabled, bind_address, bind_port, live_path, ready_path\)$/);
  refusedByBoth({ listener_enabled: 'true' }, /: health_checks: "listener_enabled" must be a boolean, got string$/);
  refusedByBoth({ bind_port: true }, /: health_checks: "bind_port" must be a string or a number, got boolean$/);
  refusedByBoth('on', /"health_checks" must be an object, got string$/);
});

test('meshid-server refuses a health port that is the agent API\'s or the bundle endpoint\'s, naming both settings, rather than failing as "another process"', () => {
  const health = (bind_port: number) => ({ listener_enabled: true, bind_address: '0.0.0.0', bind_port });
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', bind_address: '127.0.0.1:8081', health_checks: health(8081) }),
    /health_checks\.bind_port "0\.0\.0\.0:8081" and bind_address "127\.0\.0\.1:8081" are the same port: the agent API listens there; give health_checks\.bind_port a port of its own/,
  );
  assert.throws(
    () => compileServerConfig({ trust_domain: 'example.org', bundle_endpoint_address: '0.0.0.0:8443', health_checks: health(8443) }),
    /health_checks\.bind_port "0\.0\.0\.0:8443" and bundle_endpoint_address "0\.0\.0\.0:8443" are the same port/,
  );
  assert.equal(compileServerConfig({ trust_domain: 'example.org', bind_address: '127.0.0.1:8081', health_checks: health(8080) }).healthChecks?.bindPort, 8080);
});
