/**
 * Stopping and starting again the in-process MeshidServer of a cluster from startInProcessCluster: same config, same
 * data dir, same admin socket, same agent API port (agents keep their server address), same injected clock.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Clock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/log.js';
import type { ServerConfig } from '../../src/server/config.js';
import { MeshidServer } from '../../src/server/server.js';
import type { Cluster } from './cluster.js';

export type InProcessCluster = Cluster & { meshidServer: MeshidServer };

/** Stops the cluster's server; returns the config that starts it again on the same port. Stopping twice is harmless. */
export async function stopInProcessServer(cluster: InProcessCluster): Promise<ServerConfig> {
  const server = cluster.meshidServer;
  const config: ServerConfig = { ...server.config, bindAddress: `127.0.0.1:${server.agentPort}` };
  const port = server.agentPort;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopped ??= server.stop());
  // cleanup() stops `cluster.server`: while the server is down that must not stop it a second time.
  cluster.server = { adminSocket: config.adminSocket, address: () => `127.0.0.1:${port}`, stop };
  await stop();
  return config;
}

/** Starts the server again from `config` (see stopInProcessServer) and makes it the cluster's server. */
export async function startInProcessServer(cluster: InProcessCluster, config: ServerConfig, clock: Clock): Promise<MeshidServer> {
  const server = await MeshidServer.start({ config, log: silentLogger(), clock });
  cluster.meshidServer = server;
  cluster.server = { adminSocket: config.adminSocket, address: () => `127.0.0.1:${server.agentPort}`, stop: () => server.stop() };
  return server;
}

/**
 * A cold backup of the cluster's data dir (the server stopped, its files copied, started again); the function returned
 * restores it the same way: the server stopped, its data dir replaced by the copy, started again.
 */
export async function backUpInProcessServer(cluster: InProcessCluster, clock: Clock): Promise<() => Promise<void>> {
  const dataDir = cluster.meshidServer.config.dataDir;
  const backup = path.join(cluster.dir, 'backup');
  await startInProcessServer(cluster, await copyWhileStopped(cluster, () => fs.cpSync(dataDir, backup, { recursive: true })), clock);
  return async () => {
    const config = await copyWhileStopped(cluster, () => {
      fs.rmSync(dataDir, { recursive: true });
      fs.cpSync(backup, dataDir, { recursive: true });
    });
    await startInProcessServer(cluster, config, clock);
  };
}

async function copyWhileStopped(cluster: InProcessCluster, copy: () => void): Promise<ServerConfig> {
  const config = await stopInProcessServer(cluster);
  copy();
  return config;
}
