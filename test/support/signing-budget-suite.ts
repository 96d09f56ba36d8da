/**
 * For the signing-budget tests: an in-process agent holding its X.509-SVIDs, and a client of the agent API presenting
 * a copy of that agent's own SVID, with which a test spends the agent's signing budget on the server
 * (spendSigningBudget) without the agent taking part.
 */
import path from 'node:path';
import type { MeshidAgent } from '../../src/agent/agent.js';
import type { AgentIdentity } from '../../src/agent/client/agent-identity.js';
import type { Clock } from '../../src/common/clock.js';
import type { MeshidServer } from '../../src/server/server.js';
import type { Cluster } from './cluster.js';
import { connectNode, type NodeClient } from './node-api-client.js';
import { until } from './until.js';

export interface AgentWithSvidCopy {
  agent: MeshidAgent;
  socketPath: string;
  /** Presents the agent's SVID: the server charges its calls to the agent's budget. */
  impostor: NodeClient;
}

/** Starts an agent on `<name>.sock` (data in `<name>-data`) and waits until it holds an SVID for every entry it has. */
export async function agentWithSvidCopy(cluster: Cluster & { meshidServer: MeshidServer }, clock: Clock, name = 'agent'): Promise<AgentWithSvidCopy> {
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
