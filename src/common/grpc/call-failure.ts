import { status, type ServiceError } from '@grpc/grpc-js';

/**
 * What became of a failed call's connection, as grpc-js words it at the start of an UNAVAILABLE's details: the call
 * never reached a server ('not-connected'), or the connection went while it ran ('dropped', so it may have arrived).
 * Undefined for anything else, a server's own UNAVAILABLE included: that may quote a connect error of its own (a
 * partner's endpoint refusing), which is not this client's.
 */
export function connectionFailure(err: Pick<ServiceError, 'code' | 'details'>): 'not-connected' | 'dropped' | undefined {
  if (err.code !== status.UNAVAILABLE) return undefined;
  if (/^(No connection established|Failed to connect)/.test(err.details ?? '')) return 'not-connected';
  if (/^Connection dropped/.test(err.details ?? '')) return 'dropped';
  return undefined;
}

/**
 * grpc-js's details of a call that never connected, without the "Resolution note: " they end with when the resolver
 * left no note (always, for a host:port target): an empty label at the end of a log line reads as if a word were lost.
 * A note with something in it is kept.
 */
export function withoutEmptyResolutionNote(details: string): string {
  return details.replace(/\. Resolution note: *$/, '');
}

/**
 * Whether a call failed because the server has no such method at all: grpc-js answers UNIMPLEMENTED with "The server
 * does not implement the method /pkg.Service/Method" before any handler runs. A handler's own UNIMPLEMENTED (a
 * feature meshid does not offer) words itself and is not this.
 */
export function methodNotServed(err: Pick<ServiceError, 'code' | 'details'>): boolean {
  return err.code === status.UNIMPLEMENTED && /does not implement the method \//.test(err.details ?? '');
}

/**
 * Whether a call's deadline passed before it had a connection at all (grpc-js: "… Waiting for LB pick"): the socket
 * took the connection but nothing answered as an HTTP/2 server would.
 */
export function deadlineBeforeConnection(err: Pick<ServiceError, 'code' | 'details'>): boolean {
  return err.code === status.DEADLINE_EXCEEDED && /Waiting for LB pick/.test(err.details ?? '');
}

/**
 * Whether the server closed the call's connection with HTTP/2 ENHANCE_YOUR_CALM, which grpc-js reports as
 * RESOURCE_EXHAUSTED "Bandwidth exhausted or memory limit exceeded" and drops the GOAWAY's text: meshid-server closes
 * so a connection over one of its agent API bounds (agent-api-connections.ts), and says which in its own log.
 */
export function closedToCalmDown(err: Pick<ServiceError, 'code' | 'details'>): boolean {
  return err.code === status.RESOURCE_EXHAUSTED && err.details === 'Bandwidth exhausted or memory limit exceeded';
}
