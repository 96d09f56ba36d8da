/**
 * Hostile and careless callers against a real agent: a thousand connections at once, malformed protobuf, unknown
 * methods, oversized requests, clients that vanish mid-stream — each gets its status and everyone else is served.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { isMeshidError } from '../../src/common/errors.js';
import { Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import { event } from '../support/event.js';

let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-hostile-', ['spiffe://example.org/hostile-test']));
});

after(async () => {
  await cluster?.cleanup();
});

/** A raw call with hand-made request bytes, as a broken or malicious client would send. */
function rawUnary(path: string, body: Buffer, header = true): Promise<number> {
  const client = new grpc.Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (header) md.set('workload.spiffe.io', 'true');
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, md, (err) => {
      client.close();
      resolve(err?.code ?? 0);
    });
  });
}

async function stillServes(): Promise<void> {
  const c = agent.client(10_000);
  try {
    assert.equal((await c.fetchX509Svid()).svids[0]!.spiffe_id, 'spiffe://example.org/hostile-test');
  } finally {
    c.close();
  }
}

test('1,000 connections at once each get their SVID', async () => {
  const clients = Array.from({ length: 1000 }, () => connectWorkloadApi(agent.socketPath, { timeoutMs: 60_000, ownConnection: true }));
  try {
    const results = await Promise.allSettled(clients.map((c) => c.fetchX509Svid()));
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(failed.length, 0, `failures: ${failed.slice(0, 3).map((f) => String((f as PromiseRejectedResult).reason)).join('; ')}`);
    // Each its SVID: an answer without one (or with another) would count as served above.
    const served = results.map((r) => (r.status === 'fulfilled' ? r.value.svids.map((s) => s.spiffe_id).join() : ''));
    assert.deepEqual(new Set(served), new Set(['spiffe://example.org/hostile-test']));
  } finally {
    for (const c of clients) c.close();
  }
  await stillServes();
});

test('malformed protobuf is INVALID_ARGUMENT, unknown methods are UNIMPLEMENTED, and the agent keeps serving', async () => {
  assert.equal(await rawUnary('/SpiffeWorkloadAPI/FetchJWTSVID', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), grpc.status.INVALID_ARGUMENT);
  assert.equal(await rawUnary('/SpiffeWorkloadAPI/FetchWITSVID', Buffer.alloc(0)), grpc.status.UNIMPLEMENTED);
  assert.equal(await rawUnary('/SpiffeWorkloadAPI/NoSuchMethod', Buffer.alloc(0)), grpc.status.UNIMPLEMENTED);
  assert.equal(await rawUnary('/meshid.Nope/Do', Buffer.alloc(0), false), grpc.status.UNIMPLEMENTED);
  await stillServes();
});

test('10,000 audiences and empty audiences are INVALID_ARGUMENT; unknown request fields are ignored', async () => {
  const c = agent.client(10_000);
  try {
    // The status, not just a word of the message: "audience" alone would also match a refusal of another kind.
    const invalid = (e: unknown): boolean => isMeshidError(e, 'invalid_argument') && /audience/.test(e.message);
    await assert.rejects(c.fetchJwtSvid(Array.from({ length: 10_000 }, (_, i) => `aud-${i}`)), invalid);
    await assert.rejects(c.fetchJwtSvid(['']), invalid);
  } finally {
    c.close();
  }
  // X509SVIDRequest with an unknown field 15 (varint 1): a placeholder message, so it must be accepted.
  const client = new grpc.Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  const first = await new Promise<number>((resolve) => {
    const call = client.makeServerStreamRequest('/SpiffeWorkloadAPI/FetchX509SVID', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x78, 0x01]), md);
    call.on('data', (d: Buffer) => {
      resolve(d.length);
      call.cancel();
    });
    call.on('error', () => resolve(-1));
  });
  client.close();
  assert.ok(first > 0, 'a message arrived');
});

test('clients that disconnect mid-stream leave the agent serving everyone else', async () => {
  for (let i = 0; i < 200; i++) {
    const c = connectWorkloadApi(agent.socketPath, { ownConnection: true });
    const watch = c.watchX509Svids();
    await event(`the first FetchX509SVID message of connection ${i + 1}`, watch.next());
    c.close(); // the connection goes away with the stream open
  }
  await stillServes();
  assert.equal((await agent.healthTrailer())['meshid-agent-state'], 'synced', 'and still in sync with the server');
});
