/**
 * One local process must not be able to keep other workloads waiting by sending requests that are expensive to
 * decode (fair-decoding.ts, uid-fair-queue.ts): a real agent process, a flooding process of uid 65534 with no entry,
 * and this process (root, with an entry) fetching its SVID meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { packageRoot } from '../../src/common/paths.js';
import { startClusterWithAgent } from '../support/cluster.js';

const FLOOD_CLIENT = path.join(packageRoot, 'dist/test/support/sds-flood-client.js');
const VICTIM_CALLS = 30;

test('a uid flooding expensive SDS requests delays its own calls, not another uid\'s FetchX509SVID', { timeout: 120_000 }, async (t) => {
  const { cluster, agent } = await startClusterWithAgent('meshid-fair-decoding-', ['spiffe://example.org/victim']);
  const victim = agent.client();
  // 32 connections × 8 calls: 256 expensive requests in flight. Answered in arrival order, each of the victim's calls
  // would wait for about as many of them.
  const flood = spawn(process.execPath, [FLOOD_CLIENT, agent.socketPath, '32', '8'], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await victim.fetchX509Svid();
    let floodAnswered = 0;
    let started!: () => void;
    const steady = new Promise<void>((resolve) => (started = resolve));
    flood.stdout.on('data', (d: Buffer) => {
      floodAnswered += d.length;
      if (floodAnswered >= 50) started();
    });
    await Promise.race([steady, once(flood, 'exit').then(() => assert.fail('the flooding process exited'))]);

    const before = floodAnswered;
    for (let i = 0; i < VICTIM_CALLS; i++) {
      const svid = await victim.fetchX509Svid();
      assert.equal(svid.svids[0]?.spiffe_id, 'spiffe://example.org/victim');
    }
    const perVictimCall = (floodAnswered - before) / VICTIM_CALLS;
    t.diagnostic(`flood requests answered per victim call: ${perVictimCall.toFixed(1)}`);
    // Fair: a victim's call waits for the flood request being decoded when it arrives, and the flood runs on while the
    // victim is between calls; FIFO: it waits for every flood request read before it (measured: 1.0 fair, 13 to 15 in arrival order).
    assert.ok(perVictimCall < 4, `the flood got ${perVictimCall.toFixed(1)} requests answered per victim call`);
  } finally {
    flood.kill('SIGKILL');
    victim.close();
    await cluster.cleanup();
  }
});
