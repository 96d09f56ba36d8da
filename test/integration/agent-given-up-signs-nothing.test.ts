/**
 * An agent that has given up on the server (evicted: `must re-attest:`, and no unused join token to attest again
 * with) stops asking it for anything: its workload SVIDs coming due for renewal do not send SignX509Svids calls the
 * server can only refuse, for as long as the agent runs. In-process server and agent on one FakeClock, started an hour
 * behind real time (OpenSSL judges the TLS certificates by real time); the server's debug log names every refused call.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import { advanceUntil } from '../support/advance-until.js';
import { startInProcessCluster } from '../support/cluster.js';
import { capturingLogger } from '../support/log-lines.js';

const MINUTE = 60_000;

test('an evicted agent without a join token to attest again sends no SignX509Svids when its workload SVIDs come due for renewal', async (t) => {
  const clock = new FakeClock(Math.floor((Date.now() - 60 * MINUTE) / 1000) * 1000);
  const server = capturingLogger('meshid-server');
  const cluster = await startInProcessCluster(clock, 'meshid-given-up-', {}, server.log);
  t.after(() => cluster.cleanup());
  // 10-minute SVIDs: renewed about 5 minutes after they are signed.
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/given-up/a', selectors: [`unix:uid:${process.getuid!()}`], x509SvidTtl: 600 });
  await cluster.createEntry({ spiffeId: 'spiffe://example.org/given-up/b', selectors: [`unix:uid:${process.getuid!()}`], x509SvidTtl: 600 });
  const raw = { socket_path: path.join(cluster.dir, 'agent.sock'), data_dir: path.join(cluster.dir, 'agent-data') };
  const agent = await cluster.startInProcessAgent({ ...raw, join_token: await cluster.token() }, { clock, random: () => 0.5 });
  await advanceUntil(clock, () => agent.status().state === 'synced' && agent.status().svids === 2);
  assert.equal(agent.status().svids, 2);

  const refusedSigning = () => server.records().filter((r) => r.msg === 'request refused' && r['rpc'] === 'SignX509Svids').length;
  await cluster.admin.call('Agents', 'EvictAgent', { spiffe_id: agent.status().agentId! });
  await advanceUntil(clock, () => agent.status().state === 'reattest-required');
  assert.equal(agent.status().state, 'reattest-required', 'its join token is spent: it gives up');
  const refusedBefore = refusedSigning();

  // Past both SVIDs' renewal time (and their expiry), a minute at a time, with real time for a call to go out.
  for (let m = 0; m < 12; m++) {
    clock.advance(MINUTE);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(refusedSigning() - refusedBefore, 0, 'no SignX509Svids after the agent gave up');
  assert.equal(agent.status().state, 'reattest-required');
});
