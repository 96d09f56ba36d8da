/** A full agent for the benchmarks: thousands of other workloads' entries, all signed before anything is measured. */
import type { Cluster } from '../test/support/cluster.js';

/**
 * Creates `entries` entries under the agent for workloads on this host that never call (uids nobody uses): the agent
 * holds and signs them all. In batches of 1,000, one admin call each.
 */
export async function createIdleEntries(cluster: Cluster, entries: number): Promise<void> {
  for (let i = 0; i < entries; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, entries - i) }, (_, j) => ({
      spiffe_id: `spiffe://example.org/bench/w${i + j}`,
      parent_id: 'spiffe://example.org/node/east',
      selectors: [{ type: 'unix', value: `uid:${200_000 + i + j}` }],
    }));
    await cluster.admin.call('Entries', 'CreateEntries', { entries: batch });
  }
}

/**
 * Resolves once the agent has logged no X.509-SVID issuance for 3 s, or after `limitMs`, so that what is measured next
 * is not its signing burst. `output` returns the agent's log so far.
 */
export async function signingSettled(output: () => string, limitMs = 300_000): Promise<void> {
  const issued = (): number => (output().match(/X509-SVIDs issued/g) ?? []).length;
  for (let last = -1, quietSince = performance.now(), until = performance.now() + limitMs; performance.now() < until; ) {
    await new Promise((r) => setTimeout(r, 500));
    if (issued() !== last) {
      last = issued();
      quietSince = performance.now();
    } else if (performance.now() - quietSince > 3000) return;
  }
}
