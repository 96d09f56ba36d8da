/**
 * A Sync stream ends when the agent SVID it was opened with expires: a stream opened with the agent's previous SVID
 * (during a rotation; a copy of it) receives no entry updates past that SVID's life. It ends UNAVAILABLE, which the
 * agent treats as an outage and reconnects with the SVID it holds now — not `must re-attest:`, which would have it
 * throw its identity away. In-process server on a FakeClock; node:tls judges certificates on the same clock
 * (fake-clock-tls.ts), since the test moves it a day ahead.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { rejectionOf } from '../../src/agent/client/rejection.js';
import { FakeClock } from '../../src/common/clock.js';
import { fromServiceError } from '../../src/common/grpc-status.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { attestWithToken, connectNode, nodeCall, type AgentIdentity, type NodeClient } from '../support/node-api-client.js';
import { until } from '../support/until.js';

const clock = new FakeClock(Date.now() - 3_600_000);
let cluster: Cluster & { meshidServer: MeshidServer };
let restoreTls: () => void;

interface Update {
  initial?: boolean;
  entries?: Array<{ spiffe_id?: string }>;
}

function connect(identity?: { chain: Buffer[]; key: AgentIdentity['key'] }): NodeClient {
  return connectNode({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, identity);
}

async function attest(): Promise<AgentIdentity> {
  return attestWithToken({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, await cluster.token());
}

/** A Sync stream and what it has delivered: its updates, and the status it ended with. */
function openSync(client: NodeClient): { stream: grpc.ClientReadableStream<Update>; updates: Update[]; ended: () => grpc.ServiceError | undefined } {
  const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<Update>)({});
  const updates: Update[] = [];
  let error: grpc.ServiceError | undefined;
  stream.on('data', (u: Update) => updates.push(u));
  stream.on('error', (e: grpc.ServiceError) => (error = e));
  return { stream, updates, ended: () => error };
}

before(async () => {
  restoreTls = judgeTlsOnClock(clock);
  cluster = await startInProcessCluster(clock, 'meshid-sync-stream-expiry-');
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/web', selectors: ['unix:uid:1000'] });
});

after(async () => {
  await cluster?.cleanup();
  restoreTls?.();
});

test('a Sync stream opened with the previous agent SVID ends UNAVAILABLE when that SVID expires; reconnected on the current SVID, the agent gets its entries', async (t) => {
  const previous = await attest();
  const onPrevious = connect(previous);
  t.after(() => onPrevious.close());
  const old = openSync(onPrevious);
  t.after(() => old.stream.cancel());
  await until('the first update', () => (old.updates.length > 0 ? true : undefined));
  assert.deepEqual(old.updates[0]!.entries?.map((e) => e.spiffe_id), ['spiffe://example.org/web']);

  // Half a lifetime later the agent renews; the stream on the SVID it renewed from stays open (that SVID is valid).
  const notAfter = parseCertificate(previous.chain[0]!).notAfter;
  clock.set(clock.now() + Math.floor((notAfter - clock.now()) / 2));
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const renewed = await nodeCall<{ svid_chain: Buffer[] }>(onPrevious, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  const current = { chain: renewed.svid_chain, key: privateKey };
  assert.equal(old.ended(), undefined, 'the previous SVID is still valid: its stream goes on');

  clock.set(notAfter);
  const ended = await until('the stream on the expired SVID ends', old.ended);
  assert.equal(ended.code, grpc.status.UNAVAILABLE, ended.details);
  assert.equal(
    ended.details,
    `agent ${previous.id}'s SVID expired at ${new Date(notAfter).toISOString()}: this Sync stream, opened with it, ends; reconnect with the current SVID`,
  );
  // To the agent this is an outage to reconnect from, not a refusal of its identity.
  assert.equal(rejectionOf(fromServiceError(ended)), undefined);

  // Reconnected with the SVID it holds now, the agent is served its entries as before.
  const onCurrent = connect(current);
  t.after(() => onCurrent.close());
  const next = openSync(onCurrent);
  t.after(() => next.stream.cancel());
  await until('the first update on the current SVID', () => next.updates[0] ?? next.ended());
  assert.equal(next.ended(), undefined, next.ended()?.details);
  assert.deepEqual(next.updates[0]!.entries?.map((e) => e.spiffe_id), ['spiffe://example.org/web']);
});
