import type { ServerOptions } from '@grpc/grpc-js';

/**
 * What every meshid gRPC server starts with. Channelz off: meshid registers no channelz service, so grpc-js's
 * per-call channelz bookkeeping (call counters, socket and server registrations) only cost allocation and time.
 */
export const BASE_SERVER_OPTIONS: Readonly<ServerOptions> = Object.freeze({ 'grpc.enable_channelz': 0 });
