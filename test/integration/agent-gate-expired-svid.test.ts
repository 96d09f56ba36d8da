/**
 * An agent SVID that none of the server's intermediates signed (here: the server's data dir was restored from a
 * backup taken before the intermediate that signed it) is refused by the call gate before its request is decoded
 * (agent-call-gate.ts). Once that SVID has expired, the refusal says so, as the handlers do for an expired SVID: the
 * fact the operator acts on (attest again with a new join token) is the expiry, not which intermediate signed it. The
 * SVID expires on the server's clock while the connection opened before stays up (a connection outlives its
 * handshake), as it does on a host whose agent kept its channel open. In-process server on a FakeClock an hour behind
 * real time at the start (OpenSSL judges certificates by real time; the connection's handshake is done before the
 * clock passes the SVID's expiry).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { startInProcessCluster } from '../support/cluster.js';
import { backUpInProcessServer } from '../support/in-process-restart.js';
import { attestWithToken, connectNode, expiredSvidRefusalText, nodeCall } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;

test("an expired agent SVID from an intermediate the restored server never held is refused as expired, not as another CA's", async (t) => {
  const clock = new FakeClock(Date.now() - HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-gate-expired-svid-');
  teardown(t).after(() => cluster.cleanup());
  const restore = await backUpInProcessServer(cluster, clock);

  // After the backup: the east intermediate is replaced and an agent attests under its successor.
  const east = ((await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: east.id! });
  const port = { port: () => cluster.meshidServer.agentPort };
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  await restore();

  const client = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => client.close());
  const call = (): Promise<grpc.ServiceError> =>
    nodeCall(client, 'SignX509Svids', { items: [] }).then(
      () => assert.fail('the call was answered'),
      (err: grpc.ServiceError) => err,
    );
  const unexpired = await call();
  assert.equal(grpc.status[unexpired.code], 'PERMISSION_DENIED', unexpired.details);
  assert.match(unexpired.details, /^must re-attest: agent \S+'s SVID was signed by an intermediate CA this server does not hold/);

  const notAfter = new Date(new crypto.X509Certificate(agent.chain[0]!).validTo).getTime();
  clock.set(notAfter + 1000);
  const expired = await call();
  assert.equal(grpc.status[expired.code], 'PERMISSION_DENIED', expired.details);
  assert.equal(expired.details, expiredSvidRefusalText(agent.id, notAfter, clock.now()));
});
