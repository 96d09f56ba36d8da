/**
 * The agent API's TLS layer accepts any client certificate that chains to the published bundle, so an SVID-shaped
 * certificate that none of the server's own intermediates signed gets through the handshake: here one issued before
 * a restore from a backup (its intermediate, under the same root, is not in the restored journal); with
 * --upstream-bundle, one from another CA under the same upstream roots. The connection tracker
 * (agent-api-connections.ts) must hold such a connection as one without an agent SVID (its bounds and its stream
 * limit of 2), not as an agent's, which the unauthenticated bounds do not count. In-process server on a FakeClock an
 * hour behind real time (OpenSSL judges certificates by real time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { FakeClock } from '../../src/common/clock.js';
import { DEFAULT_CONNECTION_LIMITS } from '../../src/server/api/agent-api-connections.js';
import { exportPkcs8Pem } from '../../src/common/x509/keys.js';
import { certificatesToPem } from '../../src/common/x509/pem.js';
import { startInProcessCluster } from '../support/cluster.js';
import { backUpInProcessServer } from '../support/in-process-restart.js';
import { attestWithToken, type AgentIdentity } from '../support/node-api-client.js';
import { event } from '../support/event.js';
import { teardown } from '../support/teardown.js';

const HOUR = 3_600_000;

test("a connection presenting an agent SVID none of the server's intermediates signed is held as one without an agent SVID, under its stream limit", async (t) => {
  const clock = new FakeClock(Date.now() - HOUR);
  const cluster = await startInProcessCluster(clock, 'meshid-foreign-svid-connection-');
  teardown(t).after(() => cluster.cleanup());
  const restore = await backUpInProcessServer(cluster, clock);

  // After the backup: the east intermediate is replaced and an agent attests under its successor, which the restored
  // server never held; the root it chains to stays in the bundle, so TLS accepts its SVID.
  const east = ((await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: east.id! });
  const port = { port: () => cluster.meshidServer.agentPort };
  const foreign = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  await restore();
  const own = await attestWithToken(port, cluster.bundlePem, await cluster.token());

  const streamLimitOf = async (identity: AgentIdentity): Promise<number | undefined> => {
    const options = {
      rejectUnauthorized: false,
      servername: 'meshid-server',
      cert: certificatesToPem(identity.chain),
      key: exportPkcs8Pem(identity.key),
    } as http2.SecureClientSessionOptions;
    const session = http2.connect(`https://127.0.0.1:${port.port()}`, options);
    session.on('error', () => {});
    teardown(t).after(() => session.destroy());
    // The tracker's verdict on a connection without an agent SVID is a SETTINGS frame sent as the session starts, so
    // ahead of its answer to a ping sent once connected.
    await event('a ping round trip', new Promise<void>((resolve) => session.once('connect', () => session.ping(() => resolve()))));
    return session.remoteSettings.maxConcurrentStreams;
  };

  assert.equal(await streamLimitOf(foreign), DEFAULT_CONNECTION_LIMITS.unauthenticatedStreams, "another intermediate's SVID counts as no SVID");
  assert.notEqual(await streamLimitOf(own), DEFAULT_CONNECTION_LIMITS.unauthenticatedStreams, "the server's own agent SVID is an agent's connection");
});
