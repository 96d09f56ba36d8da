/**
 * Per-agent budgets for what is not signing but still costs the server: opening a Sync stream (an agent-row read,
 * the authorized set, a full first push) and renewing the agent SVID (a datastore write). A compromised agent looping
 * on either is refused RESOURCE_EXHAUSTED with a retry hint; a real agent that meets the refusal keeps serving, backs
 * off and gets through once the budget has refilled. In-process server and agents share a FakeClock set an hour
 * behind real time (OpenSSL judges the certificates by real time).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { AgentIdentity } from '../../src/agent/client/agent-identity.js';
import { FakeClock } from '../../src/common/clock.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { until } from '../support/until.js';
import { connectNode, nodeCall, type NodeClient } from '../support/node-api-client.js';

const clock = new FakeClock(Date.now() - 3_600_000);
let cluster: Cluster & { meshidServer: MeshidServer };

/**
 * Moves the clock a second at a time (firing the agent's retry timers) until `done`; how many seconds it took. Past
 * `maxSeconds` the clock stays put and a retry already due is given up to 10 s of real time to come back over the
 * network (the bound is on the fake clock, not on how fast a loaded machine is).
 */
async function advanceUntil(what: string, done: () => boolean, maxSeconds: number): Promise<number> {
  for (let s = 1; s <= maxSeconds; s++) {
    clock.advance(1000);
    // The agent's retry, if one fell due, goes over the network: give it the time to come back.
    for (let i = 0; i < 8 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
    if (done()) return s;
  }
  for (let i = 0; i < 400 && !done(); i++) await new Promise((r) => setTimeout(r, 25));
  if (done()) return maxSeconds;
  throw new Error(`${what}: not within ${maxSeconds} s of the fake clock`);
}

/** A real in-process agent, synced, and a raw client presenting that agent's own SVID (what a thief of its key has). */
async function agentAndImpostor(name: string): Promise<{ agent: MeshidAgent; impostor: NodeClient }> {
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: path.join(cluster.dir, `${name}.sock`), data_dir: path.join(cluster.dir, `${name}-data`) },
    { clock, random: () => 0.5 },
  );
  await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
  const held = (agent as unknown as { identity: AgentIdentity }).identity.current()!;
  const impostor = connectNode({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, { chain: [...held.chain], key: held.privateKey });
  return { agent, impostor };
}

/** Opens a Sync stream and waits for its first update; the stream stays open (until superseded). */
function openSync(client: NodeClient): Promise<{ stream: grpc.ClientReadableStream<unknown>; error?: grpc.ServiceError }> {
  const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<unknown>)({});
  return new Promise((resolve) => {
    stream.once('data', () => resolve({ stream }));
    stream.once('error', (error: grpc.ServiceError) => resolve({ stream, error }));
  });
}

before(async () => {
  cluster = await startInProcessCluster(clock, 'meshid-agent-call-budgets-');
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: [`unix:uid:${process.getuid!()}`] });
});

after(async () => {
  await cluster?.cleanup();
});

test('an agent opening Sync streams in a loop is refused RESOURCE_EXHAUSTED; the real agent it supersedes backs off and syncs again', async (t) => {
  const { agent, impostor } = await agentAndImpostor('sync-agent');
  t.after(() => impostor.close());
  const streams: grpc.ClientReadableStream<unknown>[] = [];
  t.after(() => streams.forEach((s) => s.cancel()));

  let refusal: grpc.ServiceError | undefined;
  let opened = 0;
  while (refusal === undefined && opened < 100) {
    const { stream, error } = await openSync(impostor);
    streams.push(stream);
    if (error === undefined) opened++;
    else refusal = error;
  }
  assert.ok(refusal, 'a hundred Sync opens in no time are not all admitted');
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  assert.match(refusal.details, /^agent spiffe:\/\/example\.org\/meshid\/agent\/east\/\S+ opens Sync streams too often; retry in \d+ s$/);
  assert.ok(opened >= 20, `a burst of reconnects is admitted (here ${opened} after the agent's own)`);

  // The impostor's streams superseded the agent's; its reconnect (after backoff) meets the spent budget.
  await advanceUntil('the agent meets the refusal', () => /opens Sync streams too often/.test(agent.status().lastError ?? ''), 5);
  assert.equal(agent.status().state, 'disconnected', 'refused, the agent keeps serving from its cache and will retry');
  // It retries with growing backoff and is admitted once the budget has refilled.
  await advanceUntil('the agent back in sync', () => agent.status().state === 'synced', 60);
  assert.equal(agent.status().ready, true);
});

test('an agent renewing in a loop is refused RESOURCE_EXHAUSTED; a real agent refused so keeps its SVID and renews after backoff', async (t) => {
  const { agent, impostor } = await agentAndImpostor('renew-agent');
  t.after(() => impostor.close());
  const renew = async (): Promise<grpc.ServiceError | undefined> => {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    return nodeCall(impostor, 'Renew', { csr: await createCsr(privateKey, publicKey) }).then(
      () => undefined,
      (err: grpc.ServiceError) => err,
    );
  };

  let refusal: grpc.ServiceError | undefined;
  let renewed = 0;
  while (refusal === undefined && renewed < 100) {
    refusal = await renew();
    if (refusal === undefined) renewed++;
  }
  assert.ok(refusal, 'a hundred renewals in no time are not all admitted');
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  assert.match(refusal.details, /^agent \S+ renews its SVID too often; retry in \d+ s$/);
  assert.ok(renewed >= 5, `a burst of renewals is admitted (here ${renewed})`);

  const expiresAt = agent.status().agentSvidExpiresAt!;
  await (agent as unknown as { identity: AgentIdentity }).identity.renew();
  assert.equal(agent.status().agentSvidExpiresAt, expiresAt, 'refused, the agent keeps the SVID it has');
  assert.equal(agent.status().state, 'synced', 'a refused renewal is no reason to leave the server');
  // Its retry timer (backoff from 1 s) renews once the budget has refilled.
  await advanceUntil('the agent SVID renewed', () => agent.status().agentSvidExpiresAt! > expiresAt, 120);
});
