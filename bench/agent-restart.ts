/** P6's measurement, shared by the small-cache and full-cache runs. */
import { connectWorkloadApi } from '../src/agent/cli/workload-client.js';
import type { Cluster } from '../test/support/cluster.js';

/**
 * Starts an agent on `dataDir` (its server is expected to be down) and returns the milliseconds until a workload of
 * this uid gets its X.509-SVID from it; the agent is stopped again before returning.
 */
export async function timeToServeFromCache(cluster: Cluster, dataDir: string): Promise<number> {
  const started = performance.now();
  const agent = await cluster.startAgent({ dataDir, wait: false });
  await untilServed(agent.socketPath);
  const elapsed = performance.now() - started;
  await agent.stop('SIGTERM');
  return elapsed;
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
