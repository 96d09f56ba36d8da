/**
 * An agent banned and then cut off by a forced revoke of its root, within moments of each other, is told on its Sync
 * stream that it is banned: the ban is the operator's decision about the agent, and the agent acts on it (it stops and
 * withdraws what it serves) where a revoke's `must re-attest:` would have it look for a new join token. The revoke's
 * bundle event reaches the stream at once, while the ban's comes through the datastore's change feed; here the feed is
 * held back until the revoke is done, which stubs the timing of that race. In-process server on a FakeClock behind
 * real time (OpenSSL judges certificates by real time).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/common/clock.js';
import { startInProcessCluster } from '../support/cluster.js';
import { attestWithToken, connectNode, openSync } from '../support/node-api-client.js';
import { until } from '../support/until.js';
import { teardown } from '../support/teardown.js';

test("a ban outranks a forced revoke of the agent's root on its Sync stream, even when the revoke's event comes first (the ban's event held back: stubs the race's timing)", async (t) => {
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-sync-ban-revoke-');
  teardown(t).after(() => cluster.cleanup());
  const port = { port: () => cluster.meshidServer.agentPort };
  const agent = await attestWithToken(port, cluster.bundlePem, await cluster.token());
  const client = connectNode(port, cluster.bundlePem, agent);
  teardown(t).after(() => client.close());
  const { ended } = await openSync(client, t);

  // The hub applies datastore changes one after another on this chain: one more link that waits holds them back.
  const hub = cluster.meshidServer.hub as unknown as { chain: Promise<void> };
  let release = (): void => undefined;
  hub.chain = hub.chain.then(() => new Promise<void>((resolve) => (release = resolve)));
  teardown(t).after(() => release());

  await cluster.admin.call('Agents', 'BanAgent', { spiffe_id: agent.id });
  const root = ((await cluster.admin.call('Authorities', 'ListAuthorities', {})).authorities ?? []).find((a) => a.kind === 'root' && a.state === 'active')!;
  await cluster.admin.call('Authorities', 'TaintAuthority', { id: root.id! });
  await cluster.admin.call('Authorities', 'RevokeAuthority', { id: root.id!, force: true });

  const status = await until('the Sync stream ends', ended);
  assert.equal(grpc.status[status.code], 'PERMISSION_DENIED', status.details);
  assert.equal(status.details, `banned: agent ${agent.id} is banned: a new join token is what lets the host back (restart its agent with one; it attests as a new agent, under a new ID). Evicting this ID ("meshid-server agent evict --spiffe-id ${agent.id}") only removes its record: no agent attests under it again`);
});
