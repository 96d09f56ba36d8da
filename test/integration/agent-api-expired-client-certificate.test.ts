/**
 * A new connection to the agent API presenting an agent SVID that has expired by the server's clock: the TLS check
 * refuses the certificate (the handshake itself goes on, as Attest needs no certificate), and every call on it is
 * refused before its request is decoded. The refusal says what the server saw, the SVID expired by its clock, and
 * what it most likely means (the agent takes it for valid: its clock is behind), not only that a certificate is
 * needed; and it never authenticates the call. In-process server on a FakeClock behind real time; node:tls judges
 * certificates on it (fake-clock-tls.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { attestWithToken, connectNode, nodeCall, type AgentIdentity } from '../support/node-api-client.js';

const HOUR = 3_600_000;
const clock = new FakeClock(Date.now() - 4 * HOUR);
let cluster: Cluster & { meshidServer: MeshidServer };
let restoreTls: () => void;

before(async () => {
  restoreTls = judgeTlsOnClock(clock);
  cluster = await startInProcessCluster(clock, 'meshid-expired-client-cert-', { agent_svid_ttl: '1h' });
});

after(async () => {
  await cluster?.cleanup();
  restoreTls?.();
});

const port = { port: () => cluster.meshidServer.agentPort };

/** The status of a SignX509Svids call made on a new connection presenting `agent`'s SVID. */
async function refusalOnNewConnection(agent: AgentIdentity): Promise<grpc.ServiceError> {
  const client = connectNode(port, cluster.bundlePem, agent);
  try {
    return await nodeCall(client, 'SignX509Svids', { items: [] }).then(
      () => assert.fail('the call was answered'),
      (err: grpc.ServiceError) => err,
    );
  } finally {
    client.close();
  }
}

test("an agent SVID expired by the server's clock, presented on a new connection, is refused as expired naming the server's clock, not as a missing certificate", async () => {
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  const notAfter = new Date(new crypto.X509Certificate(agent.chain[0]!).validTo).getTime();
  clock.set(notAfter + 2 * HOUR);

  const refused = await refusalOnNewConnection(agent);
  assert.equal(grpc.status[refused.code], 'PERMISSION_DENIED', refused.details);
  assert.equal(
    refused.details,
    `must re-attest: agent ${agent.id}'s SVID expired at ${new Date(notAfter).toISOString()} by meshid-server's clock, which reads ` +
      `${new Date(clock.now()).toISOString()}; attest again with a new join token. An agent whose own clock still takes the SVID ` +
      "for valid runs behind the server's: synchronise the clocks (chrony or ntpd; timedatectl status)",
  );
});
