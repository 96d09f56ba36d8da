/**
 * An agent change (evict, ban, prune) reaches every open Sync stream of the server. Each stream used to re-read its
 * own agent's row on every such change, so evicting k agents while N were connected cost k × N datastore reads
 * (found with bench S). The change now names the agents it concerns, and only their streams look.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../src/common/clock.js';
import type { MeshidAgent } from '../../src/agent/agent.js';
import { startInProcessCluster } from '../support/cluster.js';

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('evicting one agent re-reads only its row: the streams of the other connected agents are not asked', async (t) => {
  // Behind the real clock, which TLS judges certificates by: what the server signs is valid for OpenSSL too.
  const clock = new FakeClock(Date.now() - 3_600_000);
  const cluster = await startInProcessCluster(clock, 'meshid-agent-fanout-');
  t.after(() => cluster.cleanup());
  const start = async (name: string): Promise<MeshidAgent> => {
    const socketDir = path.join(cluster.dir, `${name}-socket`);
    fs.mkdirSync(socketDir, { mode: 0o755 });
    return cluster.startInProcessAgent(
      { join_token: await cluster.token(), socket_path: path.join(socketDir, 'api.sock'), data_dir: path.join(cluster.dir, `${name}-data`) },
      { clock },
    );
  };
  const evicted = await start('evicted');
  const others = [await start('b'), await start('c')];
  await until('every agent synced', () => [evicted, ...others].every((a) => a.status().state === 'synced'));

  const ds = cluster.meshidServer.ds;
  const read: string[] = [];
  const getAgent = ds.getAgent.bind(ds);
  ds.getAgent = (spiffeId) => {
    read.push(spiffeId);
    return getAgent(spiffeId);
  };
  const evictedId = evicted.status().agentId!;
  await cluster.admin.call('Agents', 'EvictAgent', { spiffe_id: evictedId });
  await until('the evicted agent to lose its stream', () => evicted.status().state !== 'synced');

  assert.ok(read.includes(evictedId), 'the evicted agent\'s stream looked');
  for (const other of others) {
    assert.ok(!read.includes(other.status().agentId!), `${other.status().agentId} was not asked`);
    assert.equal(other.status().state, 'synced');
  }
});
