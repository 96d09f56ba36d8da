import type { ServerOptions } from '@grpc/grpc-js';

/** The agent API's protos: the Node service and health checking. */
export const AGENT_PROTO = ['meshid/v1/agent.proto', 'grpc/health/v1/health.proto'];

/**
 * The most calls one connection to the agent API may have open at once, sent in the HTTP/2 SETTINGS
 * (MAX_CONCURRENT_STREAMS). grpc-go's default, and so SPIRE's, is unbounded (2^32-1). Unbounded, one connection with no client
 * certificate held 100,000 calls that never sent their request (~13 KB each: 1.4 GB). An agent needs far fewer at
 * once (its Sync stream, a renewal, a signing batch or two, a JWT-SVID per audience being fetched); a grpc-js or
 * grpc-go client queues the calls beyond the limit until one ends rather than failing them.
 */
export const AGENT_API_MAX_CONCURRENT_STREAMS = 100;

/**
 * The agent API's gRPC server options beyond BASE_SERVER_OPTIONS: the stream limit above, and keepalive (the server
 * pings every connection each minute and drops one that does not answer in 20 s; agents may ping an idle one every
 * 10 s). Apart from agent-api-server.ts so that the S benchmark's bare baseline server runs with the same ones.
 */
export const AGENT_API_SERVER_OPTIONS: Readonly<ServerOptions> = Object.freeze({
  'grpc.max_concurrent_streams': AGENT_API_MAX_CONCURRENT_STREAMS,
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
});
