/**
 * A workload holding a valid JWT-SVID past its refresh time, while its agent re-attests after an eviction: the refresh
 * goes out with the SVID the agent is giving up, and the server refuses it ('must re-attest'). That refusal is the old
 * identity's, not the workload's: the token held is served, as it is once the agent has given up for good
 * (reattest-required) and as cached X509-SVIDs are meanwhile. It was passed on to the workload as an error.
 *
 * The re-attestation is kept under way without a relay: this process spends the server's Attest attempts for the
 * address the agent comes from (server and agent share a FakeClock, which refills none meanwhile), so the agent's
 * Attest is refused UNAVAILABLE and retried when the clock moves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startInProcessCluster } from '../support/cluster.js';
import { until } from '../support/until.js';
import { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import { NodeClient } from '../../src/agent/client/node-client.js';
import { readTrustBundleFile } from '../../src/agent/client/trust-bundle-file.js';
import { connectWorkloadApi } from '../../src/agent/cli/workload-client.js';

const uid = process.getuid!();
const JWT_TTL_MS = 5 * 60_000;

test('a valid cached JWT-SVID is served while the agent re-attests, not the refusal of the identity it is giving up', async () => {
  // Real time at the start (the agent checks the SVIDs the server signs by it); moved on by hand from there.
  const clock = new FakeClock(Date.now());
  const c = await startInProcessCluster(clock, 'meshid-agent-reattest-jwt-');
  const hammer = new NodeClient({ serverAddress: c.server.address(), log: silentLogger() });
  try {
    await c.createEntry({ spiffeId: 'spiffe://example.org/jwt-reattest', selectors: [`unix:uid:${uid}`] });
    const raw = { socket_path: path.join(c.dir, 'agent.sock'), data_dir: path.join(c.dir, 'agent-data') };
    let agent = await c.startInProcessAgent({ ...raw, join_token: await c.token() }, { clock, random: () => 0.5 });
    await until('the first sync', () => (agent.status().state === 'synced' ? true : undefined));
    await agent.stop();
    // Restarted with a token it has not used: kept for a re-attestation.
    agent = await c.startInProcessAgent({ ...raw, join_token: await c.token() }, { clock, random: () => 0.5 });
    await until('the sync after the restart', () => (agent.status().state === 'synced' ? true : undefined));
    const evicted = agent.status().agentId!;

    const workload = connectWorkloadApi(raw.socket_path, { timeoutMs: 10_000 });
    try {
      const cached = (await workload.fetchJwtSvid(['reattest'])).svids?.[0]?.svid;
      assert.ok(cached !== undefined);
      // Past half its life on the agent's clock: the next fetch refreshes it; still valid for two minutes.
      clock.advance(JWT_TTL_MS * 0.6);

      hammer.setTrust('example.org', readTrustBundleFile(c.bundleFile));
      let refused = '';
      for (let i = 0; i < 1000 && !/too many attestation attempts/.test(refused); i++) {
        refused = await hammer.attest('not-a-token', Buffer.from('x')).then(() => '', (err: Error) => err.message);
      }
      assert.match(refused, /too many attestation attempts/);
      await c.admin.call('Agents', 'EvictAgent', { spiffe_id: evicted });
      await until('the re-attestation refused and waiting on the FakeClock', () =>
        agent.status().state === 'attesting' && /too many attestation attempts/.test(agent.status().lastError ?? '') ? true : undefined,
      );

      // Compared, never printed: a failure message must not carry a token.
      const during = await workload.fetchJwtSvid(['reattest']).then(
        (res) => (res.svids?.[0]?.svid === cached ? 'the token held' : 'another token'),
        (err: unknown) => `refused: ${String(err)}`,
      );
      assert.equal(during, 'the token held');
      assert.equal(agent.status().state, 'attesting', 'and the agent is still attesting again');
    } finally {
      workload.close();
    }
  } finally {
    hammer.close();
    await c.cleanup();
  }
});
