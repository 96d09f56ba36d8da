/**
 * For the signing-budget tests: an in-process cluster whose agents have the smallest signing budget, an agent holding
 * its X.509-SVIDs, and a client of the agent API presenting a copy of that agent's own SVID, with which a test spends
 * the agent's signing budget on the server (spendSigningBudget) without the agent taking part.
 */
import { after, before } from 'node:test';
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { AgentIdentity } from '../../src/agent/client/agent-identity.js';
import { FakeClock, type Clock } from '../../src/common/clock.js';
import type { MeshidServer } from '../../src/server/server.js';
import { startInProcessCluster, type Cluster } from './cluster.js';
import { connectNode, type NodeClient } from './node-api-client.js';
import { until } from './until.js';

export interface AgentWithSvidCopy {
  agent: MeshidAgent;
  socketPath: string;
  /** Presents the agent's SVID: the server charges its calls to the agent's budget. */
  impostor: NodeClient;
}

/** Starts an agent on `<name>.sock` (data in `<name>-data`) and waits until it holds an SVID for every entry it has. */
export async function agentWithSvidCopy(cluster: BudgetCluster, clock: Clock, name = 'agent'): Promise<AgentWithSvidCopy> {
  const socketPath = path.join(cluster.dir, `${name}.sock`);
  const agent = await cluster.startInProcessAgent(
    { join_token: await cluster.token(), socket_path: socketPath, data_dir: path.join(cluster.dir, `${name}-data`) },
    { clock, random: () => 0.5 },
  );
  await until('the X.509-SVIDs', () => {
    const { entries, svids } = agent.status();
    return entries > 0 && svids === entries ? true : undefined;
  });
  const held = (agent as unknown as { identity: AgentIdentity }).identity.current()!;
  const impostor = connectNode({ port: () => cluster.meshidServer.agentPort }, cluster.bundlePem, { chain: [...held.chain], key: held.privateKey });
  return { agent, socketPath, impostor };
}

export type BudgetCluster = Cluster & { meshidServer: MeshidServer };

/**
 * Registers the file's before/after hooks: one cluster, started behind real time (OpenSSL judges certificates by real
 * time), whose agents may sign one CSR a second after a burst of 1,000. `cluster` is there once `before` has run.
 */
export function signingBudgetSuite(dirPrefix: string): { readonly clock: FakeClock; readonly cluster: BudgetCluster } {
  const clock = new FakeClock(Date.now() - 3_600_000);
  let cluster: BudgetCluster | undefined;
  before(async () => {
    cluster = await startInProcessCluster(clock, dirPrefix, { agent_sign_rate: 1, agent_sign_burst: 1000 });
  });
  after(async () => {
    await cluster?.cleanup();
  });
  return {
    clock,
    get cluster(): BudgetCluster {
      if (cluster === undefined) throw new Error('the signing-budget cluster is used before its before hook ran');
      return cluster;
    },
  };
}
