/**
 * A new connection to the agent API presenting an agent SVID that has expired by the server's clock: the TLS check
 * refuses the certificate (the handshake itself goes on, as Attest needs no certificate), and every call on it is
 * refused before its request is decoded. The refusal says what the server saw, the SVID expired by its clock, and
 * what it most likely means (the agent takes it for valid: its clock is behind), not only that a certificate is
 * needed; and it never authenticates the call. In-process server on a FakeClock behind real time; node:tls judges
 * certificates on it (fake-clock-tls.ts).
 *
 * Anyone who reaches the port can present a certificate, so what TLS refused is looked at once per connection, not
 * on every call: a forged one naming an agent costs the server no signature check per call, and is answered as no
 * certificate is.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { signatureAlgorithmFor } from '../../src/common/x509/algorithms.js';
import { buildCertificate } from '../../src/common/x509/certificate-builder.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { extension } from '../../src/common/x509/extensions.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { encodeSpki } from '../../src/common/x509/spki.js';
import { AgentSvidAnchor } from '../../src/server/api/agent-svid-anchor.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from '../support/cluster.js';
import { judgeTlsOnClock } from '../support/fake-clock-tls.js';
import { attestWithToken, connectNode, expiredSvidRefusalText, nodeCall, type AgentIdentity } from '../support/node-api-client.js';

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

/** The status of a SignX509Svids call on `client`, which must be refused. */
function refusal(client: ReturnType<typeof connectNode>): Promise<grpc.ServiceError> {
  return nodeCall(client, 'SignX509Svids', { items: [] }).then(
    () => assert.fail('the call was answered'),
    (err: grpc.ServiceError) => err,
  );
}

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
  assert.equal(refused.details, expiredSvidRefusalText(agent.id, notAfter, clock.now()));
});

test("a forged expired certificate naming an agent and the server's CA is answered as no certificate, its signature checked once for the connection, not on every call (counted on AgentSvidAnchor.signedByServer)", async (t) => {
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  const real = parseCertificate(agent.chain[0]!);
  // The agent's names, URI and authority key ID, expired by the server's clock, signed by a key of the forger's own.
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const forged = buildCertificate(
    {
      issuerName: real.structure.issuerName,
      subjectName: real.structure.subjectName,
      notBefore: clock.now() - 2 * HOUR,
      notAfter: clock.now() - HOUR,
      spki: encodeSpki(publicKey),
      extensions: real.structure.extensions.map((e) => extension(e.oid, e.critical, e.value)),
    },
    { key: privateKey, algorithm: signatureAlgorithmFor(privateKey) },
  );

  const anonymous = connectNode(port, cluster.bundlePem);
  t.after(() => anonymous.close());
  const unknown = await refusal(anonymous);

  let checks = 0;
  const signedByServer = AgentSvidAnchor.prototype.signedByServer;
  AgentSvidAnchor.prototype.signedByServer = function (this: AgentSvidAnchor, ...args) {
    checks++;
    return signedByServer.apply(this, args);
  };
  t.after(() => (AgentSvidAnchor.prototype.signedByServer = signedByServer));
  const client = connectNode(port, cluster.bundlePem, { chain: [forged], key: privateKey });
  t.after(() => client.close());
  const first = await refusal(client);
  assert.equal(grpc.status[first.code], grpc.status[unknown.code], first.details);
  assert.equal(first.details, unknown.details);
  assert.doesNotMatch(first.details, new RegExp(agent.id));
  const onceConnected = checks;
  assert.ok(onceConnected <= 1, `${onceConnected} checks to open the connection`);
  for (let i = 0; i < 20; i++) assert.equal((await refusal(client)).details, unknown.details);
  assert.equal(checks, onceConnected, 'calls on a connection whose certificate TLS refused check no signature');
});
