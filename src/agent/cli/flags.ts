import { MAX_TIMEOUT_FLAG_MS, type FlagSpec, type ParsedArgs } from '../../common/cli/args.js';
import { DEFAULT_SOCKET_PATH, ENDPOINT_SOCKET_ENV, resolveSocketPath } from './endpoint-socket.js';
import { connectWorkloadApi, DEFAULT_TIMEOUT_MS, type WorkloadApiClient } from './workload-client.js';

/** `--socket-path PATH` (spire-agent: -socketPath), shared by every meshid-agent client command. */
export const SOCKET_PATH_FLAG: FlagSpec = Object.freeze({
  name: 'socket-path',
  aliases: ['socketPath'],
  type: 'string',
  valueName: 'PATH',
  description: `Path (or unix:///path URI) of the agent's Workload API socket (default $${ENDPOINT_SOCKET_ENV} or ${DEFAULT_SOCKET_PATH})`,
});

/** `--timeout 5s` (spire-agent: -timeout): how long to wait for the agent's answer. */
export const TIMEOUT_FLAG: FlagSpec = Object.freeze({
  name: 'timeout',
  type: 'duration',
  maxMs: MAX_TIMEOUT_FLAG_MS,
  description: `How long to wait for the agent (default ${DEFAULT_TIMEOUT_MS / 1000}s)`,
});

/** Runs `fn` with a Workload API client for the socket the flags and environment name, and always closes it. */
export async function withWorkloadClient<T>(args: ParsedArgs, env: NodeJS.ProcessEnv, fn: (client: WorkloadApiClient) => Promise<T>): Promise<T> {
  const socketPath = resolveSocketPath(args.string(SOCKET_PATH_FLAG.name), env);
  const client = connectWorkloadApi(socketPath, { timeoutMs: args.durationMs(TIMEOUT_FLAG.name) ?? DEFAULT_TIMEOUT_MS, probeStalledConnection: true });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}
