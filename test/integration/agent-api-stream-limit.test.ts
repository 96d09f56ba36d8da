/**
 * The agent API bounds the calls one connection may hold (agent-api-options.ts): the limit goes out in the HTTP/2
 * SETTINGS, and a grpc-js client (what meshid-agent is) queues its calls beyond it instead of failing them. In-process
 * server on a FakeClock an hour behind real time (OpenSSL judges the certificates by real time).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { AGENT_API_MAX_CONCURRENT_STREAMS } from '../../src/server/api/agent-api-options.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { attestWithToken, connectNode } from '../support/node-api-client.js';

const clock = new FakeClock(Date.now() - 3_600_000);
let cluster: Cluster & { meshidServer: MeshidServer };
const asIs = (b: Buffer): Buffer => b;

before(async () => {
  cluster = await startInProcessCluster(clock, 'meshid-stream-limit-');
});

after(async () => {
  await cluster?.cleanup();
});

test('the agent API announces its per-connection stream limit in its HTTP/2 SETTINGS', async (t) => {
  const session = http2.connect(`https://127.0.0.1:${cluster.meshidServer.agentPort}`, { rejectUnauthorized: false, servername: 'meshid-server' });
  t.after(() => session.destroy());
  const settings = await new Promise<http2.Settings>((resolve, reject) => {
    session.once('remoteSettings', resolve);
    session.once('error', reject);
  });
  assert.equal(settings.maxConcurrentStreams, AGENT_API_MAX_CONCURRENT_STREAMS);
  assert.equal(AGENT_API_MAX_CONCURRENT_STREAMS, 100);
});

test("an attested agent's grpc-js channel queues a call beyond the stream limit until one of its calls ends, instead of failing it", async (t) => {
  const port = { port: () => cluster.meshidServer.agentPort };
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  const client = connectNode(port, cluster.bundlePem, agent);
  t.after(() => client.close());
  // Health Watch streams stay open: the limit's worth of them fills the connection.
  const watches = Array.from({ length: AGENT_API_MAX_CONCURRENT_STREAMS }, () =>
    client.makeServerStreamRequest('/grpc.health.v1.Health/Watch', asIs, asIs, Buffer.alloc(0), new grpc.Metadata()),
  );
  t.after(() => watches.forEach((w) => w.cancel()));
  await Promise.all(watches.map((w) => new Promise((resolve, reject) => (w.once('data', resolve), w.once('error', reject)))));
  let settled: 'ok' | grpc.ServiceError | undefined;
  const queued = new Promise<void>((resolve) =>
    client.makeUnaryRequest('/grpc.health.v1.Health/Check', asIs, asIs, Buffer.alloc(0), new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err) => {
      settled = err ?? 'ok';
      resolve();
    }),
  );
  // A round trip on another connection: the queued call, had it been sent, would have had its answer by then.
  const other = connectNode(port, cluster.bundlePem, agent);
  t.after(() => other.close());
  await new Promise<void>((resolve, reject) =>
    other.makeUnaryRequest('/grpc.health.v1.Health/Check', asIs, asIs, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
  );
  assert.equal(settled, undefined, 'the call beyond the limit was answered while the connection held the limit of calls');
  watches[0]!.cancel();
  await queued;
  assert.equal(settled, 'ok');
});
