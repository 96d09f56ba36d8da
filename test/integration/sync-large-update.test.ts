/**
 * An agent whose authorized entries add up to more than the 4 MiB a gRPC client takes in one message (its own channel
 * and every earlier agent's keep that default) still syncs: the server sends a push that large as several messages,
 * `initial` on the last. Sent as one, the agent refused it (RESOURCE_EXHAUSTED, "Received message larger than max"),
 * reconnected and was sent it again, for ever: it never synced, and no deletion reached it. Real in-process server
 * and agent; the entries are large (16 selectors of ~1 KB) rather than many (~9,400 Kubernetes-style entries make the
 * same 4 MiB), to keep the test fast.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { systemClock } from '../../src/common/clock.js';
import { startInProcessCluster } from '../support/cluster.js';
import { capturingLogger } from '../support/log-lines.js';
import { until } from '../support/until.js';

const ENTRIES = 320;
const SELECTORS = 16;

test('an agent whose entries exceed 4 MiB gets them all and syncs; a delete then reaches it', async (t) => {
  const cluster = await startInProcessCluster(systemClock, 'meshid-sync-large-');
  t.after(() => cluster.cleanup());
  const ids: string[] = [];
  // The node alias first (createEntry makes it), then the rest in batches under the 4 MiB of an admin request.
  ids.push(await cluster.createEntry({ spiffeId: 'spiffe://example.org/big/0', selectors: ['unix:uid:1000'] }));
  for (let i = 1; i < ENTRIES; i += 100) {
    const entries = Array.from({ length: Math.min(100, ENTRIES - i) }, (_, j) => ({
      spiffe_id: `spiffe://example.org/big/${i + j}`,
      parent_id: 'spiffe://example.org/node/east',
      selectors: Array.from({ length: SELECTORS }, (_, k) => ({ type: 'k8s', value: `pod-label:app.kubernetes.io/part-of-${k}:${'x'.repeat(960)}` })),
    }));
    const created = await cluster.admin.call('Entries', 'CreateEntries', { entries });
    for (const r of created.results ?? []) {
      assert.equal(r.status?.code ?? 0, 0, JSON.stringify(r.status));
      ids.push(r.entry!.id!);
    }
  }
  const logs = capturingLogger('meshid-agent');
  const agent = await cluster.startInProcessAgent(
    {
      join_token: await cluster.token(),
      socket_path: path.join(cluster.dir, 'agent.sock'),
      data_dir: path.join(cluster.dir, 'agent-data'),
    },
    { log: logs.log },
  );
  const outcome = await until('the first sync, or the stream refused', () => {
    const s = agent.status();
    return s.state === 'synced' || s.lastError !== undefined ? s : undefined;
  });
  assert.equal(outcome.state, 'synced', `the agent did not sync: ${outcome.lastError}`);
  assert.equal(outcome.entries, ENTRIES);
  // The first sync's log line counts what all its messages brought, not the last message's share.
  const inSync = logs.records().find((r) => r.msg === 'in sync with meshid-server');
  assert.equal(inSync?.['received'], ENTRIES, JSON.stringify(inSync));

  await cluster.deleteEntry(ids[ENTRIES - 1]!);
  await until('the delete reaches the agent', () => (agent.status().entries === ENTRIES - 1 ? true : undefined));
  assert.equal(agent.status().state, 'synced');
});
