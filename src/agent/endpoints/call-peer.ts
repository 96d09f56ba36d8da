import type { ServerInterceptingCallInterface } from '@grpc/grpc-js';

/**
 * What `call.getPeer()` returns for a call on the agent socket (the connection's own remoteAddress, see UdsServer; a
 * Unix socket has no port), for an interceptor: read from the connection info grpc-js records once per call, where
 * getPeer() reads it again through the HTTP/2 session's socket proxy each time (~0.1 µs), and two interceptors of the
 * socket ask for every call. The start-up self-test checks that the two agree (uds-self-test.ts).
 */
export function peerOfCall(call: ServerInterceptingCallInterface): string {
  return call.getConnectionInfo().remoteAddress ?? 'unknown';
}
