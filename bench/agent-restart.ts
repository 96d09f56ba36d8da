/** P6's measurement, shared by the small-cache and full-cache runs. */
import { connectWorkloadApi } from '../src/agent/cli/workload-client.js';
import type { Cluster } from '../test/support/cluster.js';

/**
 * Starts an agent on `dataDir` (its server is expected to be down) and returns the milliseconds until a workload of
 * this uid gets its X.509-SVID from it; the agent is stopped again before returning.
 */
export async function timeToServeFromCache(cluster: Cluster, dataDir: string, limitMs = 60_000): Promise<number> {
  const started = performance.now();
  const agent = await cluster.startAgent({ dataDir, wait: false });
  try {
    // Bounded: an agent that exits or never serves from its cache fails the run instead of being polled forever.
    await untilServed(agent.socketPath, () => {
      if (agent.child.exitCode !== null || agent.child.signalCode !== null) throw new Error(`meshid-agent exited (${agent.child.exitCode ?? agent.child.signalCode}) before serving:\n${agent.output()}`);
      if (performance.now() - started > limitMs) throw new Error(`meshid-agent did not serve from its cache within ${limitMs} ms:\n${agent.output()}`);
    });
    return performance.now() - started;
  } finally {
    await agent.stop('SIGTERM');
  }
}

/** Resolves once a workload of this uid gets its X.509-SVID on `socketPath`; `check` runs before each try and may throw. */
export async function untilServed(socketPath: string, check: () => void = () => undefined): Promise<void> {
  for (;;) {
    check();
    const c = connectWorkloadApi(socketPath, { timeoutMs: 1000 });
    try {
      await c.fetchX509Svid();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    } finally {
      c.close();
    }
  }
}
