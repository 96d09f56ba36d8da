/**
 * Every agent API call is judged when its metadata arrives, before its request is read (agent-call-gate.ts): a caller
 * that is no agent, an agent whose budget for the method is spent, or a source address that spent its Attest
 * attempts is refused without the server decoding a byte of what it sent. Request bytes no decoder would accept show
 * which came first: a request that was decoded is answered INVALID_ARGUMENT, one refused before decoding gets the
 * gate's answer. In-process server on a FakeClock set an hour behind real time (OpenSSL judges the certificates by
 * real time); the clock stands still but where a test moves it, so the budgets do not refill while a test runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { attestWithToken, connectNode, rawNodeCall as rawCall, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';

const clock = new FakeClock(Date.now() - 3_600_000);
let cluster: Cluster & { meshidServer: MeshidServer };

/** Field 2 as length-delimited with a length running past the end: no valid SyncRequest or RenewRequest. */
const UNDECODABLE = Buffer.from([0x12, 0x7f, 0x01]);
/**
 * A Sync request as large as the server takes (two million empty `known` items, ~4 MB: ~0.5-0.9 s of CPU to decode),
 * ending in UNDECODABLE so that a decoded one answers INVALID_ARGUMENT instead of opening a stream.
 */
const LARGE_UNDECODABLE_SYNC = Buffer.concat([Buffer.alloc(4_000_000).fill(Buffer.from([0x12, 0x00])), UNDECODABLE]);

function connect(identity?: { chain: Buffer[]; key: AgentIdentity['key'] }): NodeClient {
  return connectNode({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, identity);
}

/** A fresh agent identity from Attest, with no agent running on it: the calls below are the only ones it makes. */
async function attest(): Promise<AgentIdentity> {
  return attestWithToken({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, await cluster.token());
}

/** Sends `bytes` to `method` until the answer is no longer INVALID_ARGUMENT; how many were, and the answer that ended it. */
async function decodedUntilRefused(client: NodeClient, method: string, bytes: Buffer, stream: boolean): Promise<{ decoded: number; refusal: grpc.ServiceError }> {
  for (let decoded = 0; decoded < 100; decoded++) {
    const err = await rawCall(client, method, bytes, stream);
    if (err.code !== grpc.status.INVALID_ARGUMENT) return { decoded, refusal: err };
  }
  throw new Error(`${method}: a hundred requests in no time were all decoded`);
}

before(async () => {
  cluster = await startInProcessCluster(clock, 'meshid-agent-call-gate-');
});

after(async () => {
  await cluster?.cleanup();
});

test('an attested agent sending maximum-size Sync requests in a row is refused RESOURCE_EXHAUSTED once its budget is spent, without the server decoding them', async (t) => {
  const agent = await attest();
  const client = connect(agent);
  t.after(() => client.close());
  const { decoded, refusal } = await decodedUntilRefused(client, 'Sync', LARGE_UNDECODABLE_SYNC, true);
  // Decoded, each of the refused ones would have been INVALID_ARGUMENT like the first thirty.
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  assert.equal(refusal.details, `agent ${agent.id} opens Sync streams too often; retry in 2 s`);
  assert.equal(decoded, 30, 'the Sync-open burst is decoded, not one request more');
  for (let i = 0; i < 5; i++) {
    const again = await rawCall(client, 'Sync', LARGE_UNDECODABLE_SYNC, true);
    assert.equal(again.code, grpc.status.RESOURCE_EXHAUSTED, again.details);
  }
  // The budget refills on the server's clock: a request is decoded again (and judged as before).
  clock.advance(2000);
  assert.equal((await rawCall(client, 'Sync', UNDECODABLE, true)).code, grpc.status.INVALID_ARGUMENT);
});

test('an attested agent renewing in a loop is refused RESOURCE_EXHAUSTED before its requests are decoded', async (t) => {
  const agent = await attest();
  const client = connect(agent);
  t.after(() => client.close());
  const { decoded, refusal } = await decodedUntilRefused(client, 'Renew', UNDECODABLE, false);
  assert.equal(refusal.code, grpc.status.RESOURCE_EXHAUSTED, refusal.details);
  assert.match(refusal.details, new RegExp(`^agent ${agent.id} renews its SVID too often; retry in \\d+ s$`));
  assert.equal(decoded, 10, 'the renewal burst is decoded, not one request more');
});

test("a workload's X.509-SVID of the same trust domain is refused PERMISSION_DENIED before its request is decoded", async (t) => {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const minted = await cluster.admin.call('Svids', 'MintX509Svid', { csr: await createCsr(privateKey, publicKey), spiffe_id: 'spiffe://example.org/web' });
  const workload = connect({ chain: minted.svid_chain!, key: privateKey });
  t.after(() => workload.close());
  for (const [method, stream] of [['Sync', true], ['Renew', false], ['SignX509Svids', false], ['SignJwtSvid', false]] as const) {
    const err = await rawCall(workload, method, UNDECODABLE, stream);
    assert.equal(err.code, grpc.status.PERMISSION_DENIED, `${method}: ${err.details}`);
    assert.equal(err.details, 'the client certificate is not an agent SVID of this trust domain');
  }
});

test('an attested agent sending more SignX509Svids items or SignJwtSvid audiences than a call may carry is refused INVALID_ARGUMENT at the first one past the limit, through the real server', async (t) => {
  const agent = await attest();
  const client = connect(agent);
  t.after(() => client.close());
  /** `n` copies of field `field` (empty, or holding `value`), then bytes no decoder accepts: a request walked to its end says so. */
  const repeated = (field: number, n: number, value: Buffer): Buffer =>
    Buffer.concat([...Array.from({ length: n }, () => Buffer.concat([Buffer.from([(field << 3) | 2, value.length]), value])), UNDECODABLE]);
  const items = await rawCall(client, 'SignX509Svids', repeated(1, 1001, Buffer.alloc(0)), false);
  assert.equal(items.code, grpc.status.INVALID_ARGUMENT, items.details);
  assert.equal(items.details, 'malformed request: meshid.agent.v1.SignX509SvidsRequest.items (field 1) holds more than 1000 values, the most one request may carry');
  const audiences = await rawCall(client, 'SignJwtSvid', repeated(2, 65, Buffer.from('db')), false);
  assert.equal(audiences.code, grpc.status.INVALID_ARGUMENT, audiences.details);
  assert.equal(audiences.details, 'malformed request: meshid.agent.v1.SignJwtSvidRequest.audience (field 2) holds more than 64 values, the most one request may carry');
  // At the limit, the walk goes on to the end (and finds the bytes there malformed).
  const atLimit = await rawCall(client, 'SignX509Svids', repeated(1, 1000, Buffer.alloc(0)), false);
  assert.equal(atLimit.code, grpc.status.INVALID_ARGUMENT, atLimit.details);
  assert.doesNotMatch(atLimit.details, /holds more than/);
});

test('a source address sending Attest requests in a row is refused UNAVAILABLE once its attempts are spent, without the server decoding them', async (t) => {
  // The attempts refill at 5 per second: twenty seconds on the server's clock gives 127.0.0.1 its whole burst back
  // whatever the tests above used.
  clock.advance(20_000);
  const anonymous = connect();
  t.after(() => anonymous.close());
  const refusedAfter = async (limit: number): Promise<{ decoded: number; refusal: grpc.ServiceError }> => {
    for (let decoded = 0; decoded < limit; decoded++) {
      const err = await rawCall(anonymous, 'Attest', UNDECODABLE, false);
      if (err.code !== grpc.status.INVALID_ARGUMENT) return { decoded, refusal: err };
    }
    throw new Error(`Attest: ${limit} requests in no time were all decoded`);
  };
  const { decoded, refusal } = await refusedAfter(150);
  assert.equal(refusal.code, grpc.status.UNAVAILABLE, refusal.details);
  assert.equal(refusal.details, 'too many attestation attempts from 127.0.0.1; retry in 1 s');
  // The wait as retry pushback too, as the budgets' refusals carry it: the agent's retry honours it.
  const pushback = Number(refusal.metadata.get('grpc-retry-pushback-ms')[0]);
  assert.ok(pushback > 0 && pushback <= 1000, `retry pushback ${pushback} ms`);
  assert.equal(decoded, 100, 'the attestation burst is decoded, not one request more');
  // A request of unknown fields as large as the server takes (~25-30 ms to check and decode) is refused the same way.
  const large = await rawCall(anonymous, 'Attest', Buffer.concat([Buffer.alloc(4_000_000).fill(Buffer.from([0x78, 0x00])), UNDECODABLE]), false);
  assert.equal(large.code, grpc.status.UNAVAILABLE, large.details);
  clock.advance(1000);
  assert.equal((await rawCall(anonymous, 'Attest', UNDECODABLE, false)).code, grpc.status.INVALID_ARGUMENT);
});
