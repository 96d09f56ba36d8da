/**
 * Each CLI pointed at the other daemon's socket, against real meshid-server and meshid-agent processes: the socket
 * answers gRPC, so nothing fails to connect, yet neither a health check nor an admin or Workload API call may pass or
 * fail as if the right daemon had answered. The operator is told the socket is someone else's and which flag to fix.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { AGENT_MAIN, startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { runNode, SERVER_MAIN, type CliResult } from '../support/server-process.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';

let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  cluster = await startCluster('meshid-wrong-socket-');
  agent = await cluster.startAgent({ joinToken: await cluster.token() });
});

after(async () => {
  await cluster?.cleanup();
});

/** Asserts a failed command: exit 1, nothing on stdout, exactly one stderr line matching `line`. */
function assertError(r: CliResult, line: RegExp): void {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}; stdout: ${r.out}; stderr: ${r.err}`);
  assert.equal(r.out, '', 'a failure prints nothing on stdout');
  assert.equal(r.err.split('\n').filter((l) => l !== '').length, 1, `expected one stderr line, got:\n${r.err}`);
  assert.match(r.err.trimEnd(), line);
}

test('each healthcheck passes on its own daemon\'s socket, SPIRE probe flags included', async () => {
  const server = await runNode(SERVER_MAIN, ['healthcheck', '--admin-socket', cluster.server.adminSocket]);
  assert.equal(server.code, 0, server.err);
  assert.equal(server.out, 'Server is healthy.\n');
  const agentCheck = await runNode(AGENT_MAIN, ['healthcheck', '-socketPath', agent.socketPath, '-shallow']);
  assert.equal(agentCheck.code, 0, agentCheck.err);
  assert.equal(agentCheck.out, 'Agent is healthy.\n');
});

test('both sockets still answer the whole-server check ("") that generic probes (Kubernetes gRPC probes) send', async () => {
  const admin = new AdminClient(cluster.server.adminSocket);
  const workload = agent.client();
  try {
    assert.equal((await admin.call('Health', 'Check', { service: '' })).status, 'SERVING');
    assert.equal(await workload.health(''), 'SERVING');
  } finally {
    admin.close();
    workload.close();
  }
});

test('meshid-agent healthcheck on the server\'s admin socket says the socket is not an agent\'s, not "healthy"', async () => {
  const r = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', cluster.server.adminSocket]);
  assertError(r, /^Error: FailedPrecondition: .*admin\.sock is served by something else than meshid-agent: check --socket-path/);
});

test('meshid-server healthcheck on an agent\'s socket says the socket is not the server\'s, not "healthy"', async () => {
  const r = await runNode(SERVER_MAIN, ['healthcheck', '--admin-socket', agent.socketPath]);
  assertError(r, /^Error: FailedPrecondition: .*api\.sock is served by something else than meshid-server: check --admin-socket/);
});

test('an admin command on an agent\'s socket says it is not a meshid-server admin socket instead of "does not implement the method"', async () => {
  for (const command of [['entry', 'show'], ['bundle', 'list'], ['token', 'generate', '--datacenter', 'east']]) {
    const r = await runNode(SERVER_MAIN, [...command, '--admin-socket', agent.socketPath]);
    assertError(r, /^Error: FailedPrecondition: .*api\.sock is not a meshid-server admin socket \(it answers, but not the admin API\): check --admin-socket/);
    assert.doesNotMatch(r.err, /does not implement/, command.join(' '));
  }
});

test('api fetch on the server\'s admin socket says it is not a meshid-agent Workload API socket', async () => {
  for (const command of [['fetch', 'x509'], ['fetch', 'jwt', '--audience', 'a'], ['fetch', 'bundle'], ['watch']]) {
    const r = await runNode(AGENT_MAIN, ['api', ...command, '--socket-path', cluster.server.adminSocket]);
    assertError(r, /^Error: FailedPrecondition: .*admin\.sock is not a meshid-agent socket \(it answers, but not the SPIFFE Workload API\): check --socket-path/);
  }
});
