/**
 * An agent serving one of its two APIs (disable_workload_api or disable_sds_api, as spire-agent 1.15), started from a
 * join token file: real server and agent processes, and the agent's own CLI against them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AGENT_MAIN, startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { runNode } from '../support/server-process.js';
import { connectSds, decodeSecrets, envoyNode, fetchSecrets, SECRET_TYPE_URL } from '../support/sds-client.js';
import { listedServices } from '../support/reflection-client.js';
import { loadProto } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';
import { SDS_SERVICE_NAME } from '../../src/agent/sds/handler.js';
import { WORKLOAD_SERVICE_NAME } from '../../src/agent/workload/handler.js';

const ID = 'spiffe://example.org/apis/web';

let cluster: Cluster;
let workloadOnly: AgentProcess;
let sdsOnly: AgentProcess;

before(async () => {
  cluster = await startCluster('meshid-disabled-apis-');
  await cluster.createEntry({ spiffeId: ID, selectors: [`unix:uid:${process.getuid!()}`] });
  const tokenFile = path.join(cluster.dir, 'join-token');
  fs.writeFileSync(tokenFile, `${await cluster.token()}\n`, { mode: 0o600 });
  workloadOnly = await cluster.startAgent({ name: 'workload-only', extraArgs: ['--join-token-file', tokenFile, '--disable-sds-api'] });
  sdsOnly = await cluster.startAgent({ name: 'sds-only', joinToken: await cluster.token(), extraArgs: ['-disableWorkloadAPI'] });
});

after(async () => {
  await cluster?.cleanup();
});

/** grpc.health.v1 Check of `service` on the agent's socket: its status, or the gRPC code it was refused with. */
async function healthOf(agent: AgentProcess, service: string): Promise<string | number> {
  const Health = serviceClient(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health');
  const client = new Health(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  try {
    return await new Promise((resolve) => {
      client['Check']!({ service }, (err: grpc.ServiceError | null, res: { status?: string }) => resolve(err ? err.code : (res.status ?? 'UNKNOWN')));
    });
  } finally {
    client.close();
  }
}

async function sdsFetch(agent: AgentProcess): Promise<string[]> {
  const sds = connectSds(agent.socketPath);
  try {
    const res = await fetchSecrets(sds, { node: envoyNode(), resource_names: ['default'], type_url: SECRET_TYPE_URL });
    return decodeSecrets(res.resources).map((s) => s.name ?? '');
  } finally {
    sds.close();
  }
}

test('an agent started with --join-token-file attests with the token in the file', async () => {
  const client = workloadOnly.client(10_000);
  try {
    assert.deepEqual((await client.fetchX509Svid()).svids.map((s) => s.spiffe_id), [ID]);
  } finally {
    client.close();
  }
});

test('disable_sds_api: the Workload API is served, SDS is not registered (UNIMPLEMENTED), and health and reflection name only the Workload API', async () => {
  await assert.rejects(sdsFetch(workloadOnly), (err: grpc.ServiceError) => err.code === grpc.status.UNIMPLEMENTED);
  assert.equal(await healthOf(workloadOnly, WORKLOAD_SERVICE_NAME), 'SERVING');
  assert.equal(await healthOf(workloadOnly, SDS_SERVICE_NAME), grpc.status.NOT_FOUND);
  const listed = await listedServices(workloadOnly.socketPath);
  assert.ok(listed.includes(WORKLOAD_SERVICE_NAME) && !listed.includes(SDS_SERVICE_NAME), listed.join(', '));
  const check = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', workloadOnly.socketPath]);
  assert.equal(check.code, 0, check.err);
});

test('disable_workload_api: SDS is served; the Workload API is not, and the agent CLI says the agent serves SDS only; healthcheck is healthy', async () => {
  assert.deepEqual(await sdsFetch(sdsOnly), ['default']);
  assert.equal(await healthOf(sdsOnly, SDS_SERVICE_NAME), 'SERVING');
  assert.equal(await healthOf(sdsOnly, WORKLOAD_SERVICE_NAME), grpc.status.NOT_FOUND);
  const listed = await listedServices(sdsOnly.socketPath);
  assert.ok(listed.includes(SDS_SERVICE_NAME) && !listed.includes(WORKLOAD_SERVICE_NAME), listed.join(', '));
  const fetch = await runNode(AGENT_MAIN, ['api', 'fetch', 'x509', '--socket-path', sdsOnly.socketPath]);
  assert.notEqual(fetch.code, 0);
  assert.match(fetch.err, /serves Envoy SDS only, not the Workload API: it runs with disable_workload_api/);
  const check = await runNode(AGENT_MAIN, ['healthcheck', '--socket-path', sdsOnly.socketPath]);
  assert.equal(check.code, 0, check.err);
  assert.match(check.out, /Agent is healthy/);
});

test('the agent refuses to start with both APIs off, before it spends a join token', async () => {
  const token = await cluster.token();
  const run = await runNode(AGENT_MAIN, [
    'run', '--server-address', cluster.server.address(), '--trust-bundle', cluster.bundleFile, `--join-token=${token}`,
    '--socket-path', path.join(cluster.dir, 'none.sock'), '--data-dir', path.join(cluster.dir, 'none-data'),
    '--disable-workload-api', '--disable-sds-api',
  ]);
  assert.notEqual(run.code, 0);
  assert.match(run.err, /would serve nothing: leave one of them off/);
  // The token is still unused: an agent given it now attests (healthy means attested and synced) and serves.
  const late = await cluster.startAgent({ name: 'late', joinToken: token });
  assert.deepEqual(await late.svidIds(), [ID]);
});
