/** What the agent life-cycle integration tests share: a cluster per test, and the wait for an SVID on disk. */
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, type AgentProcess, type Cluster } from './cluster.js';

/** Runs `fn` against a new cluster (a meshid-server process on a temp dir) and cleans it up whatever happens. */
export async function withCluster(prefix: string, fn: (c: Cluster) => Promise<void>): Promise<void> {
  const c = await startCluster(prefix);
  try {
    await fn(c);
  } finally {
    await c.cleanup();
  }
}

/**
 * Waits until the agent has persisted an SVID for `spiffeId` (polling files a process writes): in the snapshot
 * (state.json) or in a change set of its journal (state.<n>.journal, one checksummed JSON batch per line).
 */
export async function persisted(agent: AgentProcess, spiffeId: string): Promise<void> {
  const names = (doc: { svids?: Array<{ spiffe_id: string }> }): boolean => doc.svids?.some((s) => s.spiffe_id === spiffeId) ?? false;
  for (let i = 0; i < 200; i++) {
    for (const name of fs.readdirSync(agent.dataDir)) {
      try {
        const text = fs.readFileSync(path.join(agent.dataDir, name), 'utf8');
        if (name === 'state.json' && names(JSON.parse(text))) return;
        if (/^state\.\d+\.journal$/.test(name) && text.split('\n').some((l) => l.length > 9 && names(JSON.parse(l.slice(9))))) return;
      } catch {
        // not (completely) written yet
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${spiffeId} never reached ${agent.dataDir}`);
}
