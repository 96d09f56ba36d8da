/**
 * A workload subscribing long name lists on many SDS streams, against a real agent: the names a uid's open streams
 * hold are bounded (subscription-budget.ts), where each stream of 1,000 names of 2 KB held ~6.6 MB of the agent's
 * memory for its life.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { DEFAULT_NAME_CHARS_PER_UID } from '../../src/agent/sds/subscription-budget.js';
import { Cluster, startClusterWithAgent, type AgentProcess } from '../support/cluster.js';
import { connectSds, envoyNode, SotwClient } from '../support/sds-client.js';

let cluster: Cluster;
let agent: AgentProcess;

before(async () => {
  ({ cluster, agent } = await startClusterWithAgent('meshid-sds-names-', ['spiffe://example.org/names-test']));
});

after(async () => {
  await cluster?.cleanup();
});

/** 1,000 names of 2,000 characters (the most a request may carry is 1,000 of 2,048 bytes), resolving to nothing. */
const longNames = (stream: number): string[] =>
  Array.from({ length: 1000 }, (_, i) => `spiffe://example.org/${stream}-${i}-${'p'.repeat(2000 - 24)}`.slice(0, 2000));

test('one uid\'s SDS streams hold at most the budget of subscribed names; the stream past it ends RESOURCE_EXHAUSTED', async () => {
  const client = connectSds(agent.socketPath);
  const streams: SotwClient[] = [];
  try {
    const fitting = Math.floor(DEFAULT_NAME_CHARS_PER_UID / 2_000_000);
    for (let i = 0; i <= fitting; i++) {
      const s = new SotwClient(client);
      s.subscribe(longNames(i), envoyNode(`n${i}`));
      streams.push(s);
    }
    // Whichever of them the agent reads last is the one past the budget.
    const first = await Promise.race([
      ...streams.map((s, i) => s.status.then((st) => ({ i, code: st.code as number | string }))),
      new Promise<{ i: number; code: string }>((resolve) => setTimeout(() => resolve({ i: -1, code: 'none ended within 20 s' }), 20_000).unref()),
    ]);
    assert.equal(first.code, status.RESOURCE_EXHAUSTED);
    // The streams within the budget are served: one of them gets its secret once it asks for one that resolves.
    const served = streams[first.i === 0 ? 1 : 0]!;
    served.send({ resource_names: ['default'], type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', response_nonce: '' });
    assert.equal((await served.next(10_000)).resources?.length, 1);
  } finally {
    for (const s of streams) s.cancel();
    client.close();
  }
});
