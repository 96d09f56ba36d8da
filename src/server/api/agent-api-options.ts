import type { ServerOptions } from '@grpc/grpc-js';

/** The agent API's protos: the Node service and health checking. */
export const AGENT_PROTO = ['meshid/v1/agent.proto', 'grpc/health/v1/health.proto'];

/**
 * The agent API's gRPC server options beyond BASE_SERVER_OPTIONS: keepalive (the server pings every connection each
 * minute and drops one that does not answer in 20 s; agents may ping an idle one every 10 s). Apart from server.ts
 * so that the S benchmark's bare baseline server runs with the same ones.
 */
export const AGENT_API_KEEPALIVE_OPTIONS: Readonly<ServerOptions> = Object.freeze({
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
});
