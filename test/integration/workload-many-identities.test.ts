/**
 * A real meshid-server and meshid-agent; this test process is a workload holding many identities, as a node-wide
 * uid can (Istio runs every sidecar of a node as one uid).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startClusterWithAgent, type AgentProcess, type Cluster } from '../support/cluster.js';

const IDS = Array.from({ length: 12 }, (_, i) => `spiffe://example.org/many/id-${i}`);
let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-many-identities-', IDS));
});

after(async () => {
  await cluster?.cleanup();
});

/** The agent's log lines (JSON, one a line) and anything else it wrote among them. */
function outputLines(): { json: Array<Record<string, unknown>>; other: string[] } {
  const json: Array<Record<string, unknown>> = [];
  const other: string[] = [];
  for (const line of agent.output().split('\n')) {
    if (line === '') continue;
    try {
      json.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      other.push(line);
    }
  }
  return { json, other };
}

test('FetchJWTSVID for a caller of twelve identities signs them all and the agent writes only JSON log lines (no Node listener warning)', async () => {
  const client = agent.client();
  try {
    for (const audience of ['aud-one', 'aud-two']) {
      const res = await client.fetchJwtSvid([audience]);
      assert.deepEqual(res.svids.map((s) => s.spiffe_id).sort(), [...IDS].sort());
    }
  } finally {
    client.close();
  }
  assert.deepEqual(outputLines().other, [], 'every line on the agent\'s stderr is a JSON log line');
});
