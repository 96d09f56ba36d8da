/**
 * A real agent and workloads whose connection is a worker thread's (test/support/thread-relay.c): the relay connects
 * to the agent from a thread, and the test's Workload API client talks through it, so the agent attests the C
 * program. An entry names that binary by path and sha256; a copy of it differing in one byte, at another path, is
 * the control that matches nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { connectWorkloadApi, grpcCode } from '../../src/agent/cli/workload-client.js';
import { startCluster, type AgentProcess, type Cluster } from '../support/cluster.js';
import { buildThreadRelay, ThreadRelay, threadRelaySkip as skip, type RelayShape } from '../support/thread-relay.js';

const SPIFFE_ID = 'spiffe://example.org/thread-relay';

let cluster: Cluster;
let agent: AgentProcess;
let registered: string;
let other: string;

before(async () => {
  if (skip) return;
  cluster = await startCluster('meshid-threads-');
  registered = path.join(cluster.dir, 'registered', 'thread-relay');
  other = path.join(cluster.dir, 'other', 'thread-relay');
  fs.mkdirSync(path.dirname(registered));
  fs.mkdirSync(path.dirname(other));
  buildThreadRelay(registered);
  // The same program with one more byte (ELF ignores it): another path and another digest.
  fs.copyFileSync(registered, other);
  fs.appendFileSync(other, Buffer.from([0]));
  const digest = createHash('sha256').update(fs.readFileSync(registered)).digest('hex');
  await cluster.createEntry({ spiffeId: SPIFFE_ID, selectors: [`unix:path:${registered}`, `unix:sha256:${digest}`] });
  agent = await cluster.startAgent({ joinToken: await cluster.token() });
});

after(async () => {
  await cluster?.cleanup();
});

/** FetchX509SVID through a relay of `binary` in `shape`: the SPIFFE IDs it got, or the gRPC status it failed with. */
async function fetchThrough(binary: string, shape: RelayShape, name: string): Promise<string[] | number> {
  const relay = new ThreadRelay(binary, agent.socketPath, path.join(cluster.dir, `${name}.sock`), shape);
  const client = connectWorkloadApi(relay.listenSocket, { ownConnection: true, timeoutMs: 10_000 });
  try {
    await relay.ready();
    if (shape === 'main-exits') assert.equal(relay.leaderState(), 'Z', 'the thread-group leader is a zombie while the relay serves');
    return (await client.fetchX509Svid()).svids.map((s) => s.spiffe_id);
  } catch (err) {
    const code = grpcCode(err);
    if (code === undefined) throw err;
    return code;
  } finally {
    client.close();
    await relay.stop();
  }
}

test('a process whose main thread exited (zombie leader, live worker thread) gets the SVID of its binary', { skip }, async () => {
  assert.deepEqual(await fetchThrough(registered, 'main-exits', 'zombie-leader'), [SPIFFE_ID]);
});

test('the same shape from another binary gets PermissionDenied, not the registered identity', { skip }, async () => {
  assert.equal(await fetchThrough(other, 'main-exits', 'zombie-leader-other'), grpc.status.PERMISSION_DENIED);
});

test('a connection made by a non-main thread while the main thread lives is attested as its process', { skip }, async () => {
  assert.deepEqual(await fetchThrough(registered, 'main-stays', 'worker-thread'), [SPIFFE_ID]);
  assert.equal(await fetchThrough(other, 'main-stays', 'worker-thread-other'), grpc.status.PERMISSION_DENIED);
});
