/**
 * One agent identity on two hosts: a data dir copied after attestation (a VM image, a restored backup) and started
 * beside the original. Two in-process agents and an in-process server share a FakeClock (20 h behind real time, so the
 * TLS layer's real-clock checks pass), so the first agent SVID renewal is one `advance()` away. The tests after the
 * first play the two hosts with test clients (node-api-client.ts) on their own connections, to order their calls.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';
import { FakeClock } from '../../src/common/clock.js';
import { createLogger, type Logger } from '../../src/common/log.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { startInProcessCluster } from '../support/cluster.js';
import { attestWithToken, connectNode, nodeCall, openSync, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;

function capturingLogger(): { log: Logger; text: () => string } {
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'debug', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  return { log, text: () => raw.join('') };
}

test('a copied agent data dir: the first renewal cuts the copy off, which logs why and what to do; the server names the identity and where the copy is; the original keeps serving', async (t) => {
  const clock = new FakeClock(Date.now() - 20 * HOUR);
  const server = capturingLogger();
  const cluster = await startInProcessCluster(clock, 'meshid-copied-agent-', {}, server.log);
  teardown(t).after(() => cluster.cleanup());
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/app', selectors: [`unix:uid:${process.getuid!()}`] });
  const token = await cluster.token();
  const dataA = path.join(cluster.dir, 'agent-a-data');
  const dataB = path.join(cluster.dir, 'agent-b-data');
  const socket = (name: string): string => {
    fs.mkdirSync(path.join(cluster.dir, name), { mode: 0o755 });
    return path.join(cluster.dir, name, 'api.sock');
  };
  const socketA = socket('agent-a-socket');
  const socketB = socket('agent-b-socket');
  // The same config on both hosts (the image's), token included; jitter 0 renews A well before B's (jitter 0.99).
  const start = (dataDir: string, socketPath: string, random: number, log: Logger): Promise<MeshidAgent> =>
    cluster.startInProcessAgent({ join_token: token, socket_path: socketPath, data_dir: dataDir }, { clock, random: () => random, log });
  const first = await start(dataA, socketA, 0, capturingLogger().log);
  await until('the first sync', () => (first.status().svids > 0 ? true : undefined));
  await first.stop();
  fs.cpSync(dataA, dataB, { recursive: true });

  const a = capturingLogger();
  const b = capturingLogger();
  const agentA = await start(dataA, socketA, 0, a.log);
  let agentB = await start(dataB, socketB, 0.99, b.log);
  const agentId = agentA.status().agentId!;
  assert.equal(agentB.status().agentId, agentId);

  // Past A's renewal (half-life minus jitter), before B's.
  clock.advance(11 * HOUR);
  await until('A renews its agent SVID', () => (/"agent SVID renewed"/.test(a.text()) ? true : undefined));
  for (let i = 0; agentB.status().state !== 'reattest-required'; i++) {
    if (i > 400) assert.fail(`the copy was not cut off:\n${b.text()}`);
    // Reconnect backoffs run on the shared clock.
    clock.advance(1000);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.match(b.text(), new RegExp(`is no longer agent ${agentId}'s SVID \\(serial [0-9a-f]+\\): another holder of this identity renewed it since`));
  assert.match(b.text(), /Restart this host's agent with a new join token/);

  // The original still syncs and serves.
  await until('A in sync', () => (agentA.status().state === 'synced' ? true : undefined));
  const client = connectWorkloadApi(socketA);
  teardown(t).after(() => client.close());
  assert.equal((await client.fetchX509Svid()).svids?.[0]?.spiffe_id, 'spiffe://example.org/app');

  // The operator restarts the copy as it is: the server refuses it and says in its own log what happened, and where.
  await agentB.stop();
  const b2 = capturingLogger();
  agentB = await start(dataB, socketB, 0.99, b2.log);
  await until('the restarted copy is refused', () => (agentB.status().state === 'reattest-required' ? true : undefined));
  const line = server.text().split('\n').find((l) => l.includes('two hosts hold agent'));
  assert.ok(line, server.text());
  assert.match(line, new RegExp(`"agent":"${agentId}"`));
  assert.match(line, /"peer":"127\.0\.0\.1:\d+"/);
  assert.match(line, /Restart its agent with a new join token/);
});

/** Renews `agent`'s SVID on `client` (a connection presenting it); returns the renewed identity. */
async function renew(client: NodeClient, agent: AgentIdentity): Promise<AgentIdentity> {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const res = await nodeCall<{ svid_chain: Buffer[] }>(client, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  return { id: agent.id, chain: res.svid_chain, key: privateKey };
}

/** A call that authenticates the agent in full before it is refused for its entry: enough to retire a previous SVID. */
function anyCall(client: NodeClient): Promise<grpc.ServiceError> {
  return nodeCall(client, 'SignJwtSvid', { entry_id: 'no-such-entry', audience: ['a'] }).then(
    () => assert.fail('the call was answered'),
    (err: grpc.ServiceError) => err,
  );
}

test("a copy whose Sync stream is ended (it then calls no more) is named in the server's log at once, as a refused call's copy is", async (t) => {
  const clock = new FakeClock(Date.now() - HOUR);
  const server = capturingLogger();
  const cluster = await startInProcessCluster(clock, 'meshid-copied-agent-sync-', {}, server.log);
  teardown(t).after(() => cluster.cleanup());
  const port = { port: () => cluster.meshidServer.agentPort };
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());

  // The copy holds the agent's one Sync stream; the original renews and makes its first call with the renewed SVID.
  const copy = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => copy.close());
  const copyStream = await openSync(copy, t);
  const original = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => original.close());
  const renewed = connectNode(port, cluster.bundlePem, await renew(original, agent));
  teardown(t).after(() => renewed.close());
  assert.equal(grpc.status[(await anyCall(renewed)).code], 'PERMISSION_DENIED');

  const end = await until("the copy's Sync stream ends", copyStream.ended);
  assert.equal(grpc.status[end.code], 'PERMISSION_DENIED', end.details);
  assert.match(end.details, new RegExp(`^must re-attest: the SVID this Sync stream was opened with is no longer agent ${agent.id}'s SVID`));
  const line = await until('the server logs the copy', () => server.text().split('\n').find((l) => l.includes('two hosts hold agent')));
  assert.match(line, new RegExp(`"agent":"${agent.id}"`));
  assert.match(line, /"peer":"127\.0\.0\.1:\d+"/);
});

test("the agent's own late traffic on the connection it renewed on (a call handled after its first call with the renewed SVID, its old Sync stream) is not logged as a copy; a copy's call on another connection is", async (t) => {
  const clock = new FakeClock(Date.now() - HOUR);
  const server = capturingLogger();
  const cluster = await startInProcessCluster(clock, 'meshid-copied-agent-late-', {}, server.log);
  teardown(t).after(() => cluster.cleanup());
  const port = { port: () => cluster.meshidServer.agentPort };
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());

  // The agent's connection: its Sync stream, then its renewal on it.
  const old = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => old.close());
  const oldStream = await openSync(old, t);
  const renewed = connectNode(port, cluster.bundlePem, await renew(old, agent));
  teardown(t).after(() => renewed.close());
  // Its first call with the renewed SVID retires the old one, before the server handles a call sent on the old
  // connection: what the race produces, ordered here by making that call only now.
  assert.equal(grpc.status[(await anyCall(renewed)).code], 'PERMISSION_DENIED');
  // Refused as retryable, not `must re-attest:`: an agent told that drops the identity it has just renewed (it
  // re-attests with a join token, or gives up and serves its cache until it expires) for a call that overtook its move.
  const streamEnd = await until('the old Sync stream ends', oldStream.ended);
  assert.equal(grpc.status[streamEnd.code], 'UNAVAILABLE', streamEnd.details);
  assert.doesNotMatch(streamEnd.details, /^(must re-attest|banned): /);
  const late = await anyCall(old);
  assert.equal(grpc.status[late.code], 'UNAVAILABLE', late.details);
  assert.match(late.details, new RegExp(`^agent ${agent.id} has renewed its SVID since this call's`));
  assert.doesNotMatch(server.text(), /two hosts hold agent/);

  // The same SVID presented on a connection of its own is a copy's.
  const copy = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => copy.close());
  assert.equal(grpc.status[(await anyCall(copy)).code], 'PERMISSION_DENIED');
  await until('the server logs the copy', () => (/two hosts hold agent/.test(server.text()) ? true : undefined));
});
