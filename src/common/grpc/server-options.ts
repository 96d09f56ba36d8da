import type { ServerOptions } from '@grpc/grpc-js';
import { malformedRequestInterceptor } from './strict-requests.js';

/**
 * What every meshid gRPC server starts with:
 * - channelz off: meshid registers no channelz service, so grpc-js's per-call channelz bookkeeping (call counters,
 *   socket and server registrations) only cost allocation and time;
 * - malformedRequestInterceptor: request bytes that are no valid protobuf encoding (strict-requests.ts) end the call
 *   with INVALID_ARGUMENT. A server with interceptors of its own lists them after BASE_INTERCEPTORS (the agent socket
 *   puts its call limit and fairDecodingInterceptor before: its requests are decoded there, in their uid's turn).
 */
export const BASE_INTERCEPTORS = Object.freeze([malformedRequestInterceptor]);

export const BASE_SERVER_OPTIONS: Readonly<ServerOptions> = Object.freeze({ 'grpc.enable_channelz': 0, interceptors: [...BASE_INTERCEPTORS] });
