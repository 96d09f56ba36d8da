import path from 'node:path';
import type { FakeClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import type { ConnectionLimits } from '../../src/server/api/agent-api-connections.js';
import { compileServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import { Cluster, DATACENTER, TRUST_DOMAIN } from './cluster.js';
import { tempDir } from './server-kit.js';

/**
 * An in-process server on 127.0.0.1 whose agent API port has `limits` (the bounds on its connections) instead of the
 * defaults, with a cluster around it (admin socket, bundle file, join tokens) for agents to attest to.
 */
export async function startServerWithLimits(dirPrefix: string, clock: FakeClock, limits: Partial<ConnectionLimits>): Promise<{ cluster: Cluster; server: MeshidServer }> {
  const t = tempDir(dirPrefix);
  const config = compileServerConfig({
    trust_domain: TRUST_DOMAIN,
    datacenters: [DATACENTER],
    data_dir: path.join(t.dir, 'server', 'data'),
    bind_address: '127.0.0.1:0',
    admin_socket: path.join(t.dir, 'server', 'admin', 'admin.sock'),
  });
  const server = await MeshidServer.start({ config, log: silentLogger(), clock, agentApiConnectionLimits: limits });
  const cluster = new Cluster(t.dir, { adminSocket: config.adminSocket, address: () => `127.0.0.1:${server.agentPort}`, stop: () => server.stop() }, t.cleanup);
  await cluster.writeBundle();
  return { cluster, server };
}
