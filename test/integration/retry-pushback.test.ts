/**
 * The wait a budget refusal asks for travels as gRPC retry pushback (trailer `grpc-retry-pushback-ms`, grpc-status.ts)
 * as well as at the end of its message ("…; retry in N s", which older agents read). The server sends both, from its
 * handlers (signing) and from its call gate (Sync opens, renewals). In-process server on a FakeClock an hour behind real time (OpenSSL judges the certificates
 * by real time), standing still, so the budgets do not refill while the test runs. The agent's side:
 * test/unit/agent/budget-refusal.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { RETRY_PUSHBACK_KEY } from '../../src/common/grpc-status.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { attestWithToken, connectNode, nodeCall, rawNodeCall, type NodeClient } from '../support/node-api-client.js';

const clock = new FakeClock(Date.now() - 3_600_000);
let cluster: Cluster & { meshidServer: MeshidServer };

before(async () => {
  // The smallest signing budget an agent may have, refilling one CSR a second.
  cluster = await startInProcessCluster(clock, 'meshid-retry-pushback-', { agent_sign_rate: 1, agent_sign_burst: 1000 });
});

after(async () => {
  await cluster?.cleanup();
});

/** Field 2 as length-delimited with a length running past the end: no valid request, so a decoded one is INVALID_ARGUMENT. */
const UNDECODABLE = Buffer.from([0x12, 0x7f, 0x01]);

/** The refusal's wait, as its trailer and as its message's hint; both must be there and agree. */
function waitsOf(refusal: grpc.ServiceError): { pushbackMs: number; hintSeconds: number } {
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  const pushback = refusal.metadata.get(RETRY_PUSHBACK_KEY);
  assert.equal(pushback.length, 1, `one ${RETRY_PUSHBACK_KEY} trailer: ${refusal.details}`);
  assert.match(String(pushback[0]), /^\d+$/, 'a whole number of ms');
  const hint = /; retry in (\d+) s$/.exec(refusal.details);
  assert.ok(hint !== null, `the message keeps its hint for older agents: ${refusal.details}`);
  return { pushbackMs: Number(pushback[0]), hintSeconds: Number(hint[1]) };
}

async function refusedAfterBurst(client: NodeClient, method: string, stream: boolean): Promise<grpc.ServiceError> {
  for (let i = 0; i < 100; i++) {
    const err = await rawNodeCall(client, method, UNDECODABLE, stream);
    if (err.code !== grpc.status.INVALID_ARGUMENT) return err;
  }
  throw new Error(`${method}: never refused`);
}

test('every budget refusal of the agent API carries its wait as grpc-retry-pushback-ms beside the message hint: signing, Sync opens, renewals', async (t) => {
  const agent = await attestWithToken({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, await cluster.token());
  const client = connectNode({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, { chain: agent.chain, key: agent.key });
  t.after(() => client.close());

  // Signing (refused in the handler): the whole budget, then one CSR more.
  const items = (n: number): unknown => ({ items: Array.from({ length: n }, (_, i) => ({ entry_id: `no-such-entry-${i}`, csr: Buffer.alloc(0) })) });
  await nodeCall(client, 'SignX509Svids', items(1000));
  const signing = await nodeCall(client, 'SignX509Svids', items(1)).then(
    () => assert.fail('the spent budget signs nothing'),
    (err: grpc.ServiceError) => err,
  );
  const signingWaits = waitsOf(signing);
  assert.ok(signingWaits.pushbackMs > 0 && signingWaits.pushbackMs <= 1000, `one CSR refills in a second: ${signingWaits.pushbackMs} ms`);
  assert.equal(signingWaits.hintSeconds, Math.ceil(signingWaits.pushbackMs / 1000));

  // Sync opens and renewals (refused by the call gate, before decoding).
  for (const [method, stream] of [['Sync', true], ['Renew', false]] as const) {
    const { pushbackMs, hintSeconds } = waitsOf(await refusedAfterBurst(client, method, stream));
    assert.ok(pushbackMs > 0, `${method}: a wait`);
    assert.equal(hintSeconds, Math.ceil(pushbackMs / 1000), `${method}: the same wait in both`);
  }
});
