/**
 * A banned agent whose SVID none of the server's intermediates signed (here: the server's data dir was restored from
 * a backup taken before the intermediate that signed its renewed SVID) is told it is banned, as the handlers tell any
 * banned agent, not `must re-attest:`: a banned agent stops and withdraws the identities it serves, while one told to
 * re-attest serves its cached SVIDs on and looks for a join token. In-process server on a FakeClock an hour behind real
 * time (OpenSSL judges certificates by real time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { createCsr } from '../../src/common/x509/csr.js';
import { generateKeyPair } from '../../src/common/x509/keys.js';
import { startInProcessCluster } from '../support/cluster.js';
import { backUpInProcessServer } from '../support/in-process-restart.js';
import { attestWithToken, connectNode, nodeCall } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

test('a banned agent presenting an SVID from an intermediate the restored server never held is told it is banned, not to re-attest', async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-gate-banned-unheld-');
  teardown(t).after(() => cluster.cleanup());
  const port = { port: () => cluster.meshidServer.agentPort };
  // Attested before the backup, so the restored datastore knows the agent.
  const attested = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  const restore = await backUpInProcessServer(cluster, clock);

  // After the backup: the east intermediate is replaced and the agent renews under its successor.
  const east = ((await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: east.id! });
  const before = connectNode(port, cluster.bundlePem, attested);
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  const renewed = await nodeCall<{ svid_chain: Buffer[] }>(before, 'Renew', { csr: await createCsr(privateKey, publicKey) });
  before.close();
  await restore();
  await cluster.admin.call('Agents', 'BanAgent', { spiffe_id: attested.id });

  const client = connectNode(port, cluster.bundlePem, { chain: renewed.svid_chain, key: privateKey });
  teardown(t).after(() => client.close());
  for (const method of ['SignX509Svids', 'Sync']) {
    const refused = await new Promise<grpc.ServiceError>((resolve, reject) => {
      if (method === 'Sync') {
        const stream = (client['Sync'] as (req: unknown) => grpc.ClientReadableStream<unknown>)({});
        stream.on('data', () => reject(new Error('Sync answered')));
        stream.on('error', resolve);
      } else {
        nodeCall(client, method, { items: [] }).then(() => reject(new Error(`${method} answered`)), resolve);
      }
    });
    assert.equal(grpc.status[refused.code], 'PERMISSION_DENIED', refused.details);
    assert.equal(refused.details, `banned: agent ${attested.id} is banned: a new join token is what lets the host back (restart its agent with one; it attests as a new agent, under a new ID). Evicting this ID ("meshid-server agent evict --spiffe-id ${attested.id}") only removes its record: no agent attests under it again`, method);
  }
});
