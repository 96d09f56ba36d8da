import type { ServiceDefinition } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { withResponseSerializers, type Serialize } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';

/**
 * The largest message a gRPC client takes unless told otherwise: the default max receive message length of grpc-go,
 * grpc-java, grpc-js and C-core, so of go-spiffe, java-spiffe, py-spiffe and spiffe-helper, none of which raises it.
 */
export const DEFAULT_CLIENT_RECEIVE_LIMIT = 4 * 1024 * 1024;

/**
 * Response serializers that log a warning for each Workload API message larger than DEFAULT_CLIENT_RECEIVE_LIMIT
 * (one line a minute per method and default identity). Such a client refuses the message as RESOURCE_EXHAUSTED
 * ("received message larger than max") and its watcher retries for ever, so the workload never gets its SVIDs, and
 * nothing but this line tells the operator why: the agent has sent it all. An X509SVIDResponse passes 4 MiB at about
 * 2,400 SVIDs of P-256 certificates (each carries the own trust domain's bundle), fewer under RSA CAs or while a
 * second root is published.
 */
export function warnOversizedResponses(definition: ServiceDefinition, methods: readonly string[], log: Logger, clock: Clock): ServiceDefinition {
  const throttle = new LogThrottle(clock);
  const watched = (method: string) => (serialize: Serialize): Serialize => (value) => {
    const bytes = serialize(value);
    if (bytes.length > DEFAULT_CLIENT_RECEIVE_LIMIT) {
      const svids = (value as { svids?: Array<{ spiffe_id?: string }> }).svids;
      const defaultId = svids?.[0]?.spiffe_id;
      const admitted = throttle.admit(`${method}\n${defaultId ?? ''}`);
      if (admitted !== undefined) {
        log.warn(
          { rpc: method, bytes: bytes.length, ...(svids !== undefined && { count: svids.length }), ...(defaultId !== undefined && { spiffeId: defaultId }), ...admitted },
          'a Workload API response is larger than the 4 MiB gRPC clients accept by default (go-spiffe, java-spiffe, py-spiffe): ' +
            'they refuse it (RESOURCE_EXHAUSTED) and retry for ever; give the workload fewer identities (the entries its selectors match) ' +
            "or raise its client's max receive message size",
        );
      }
    }
    return bytes;
  };
  return methods.reduce((d, method) => withResponseSerializers(d, [method], watched(method)), definition);
}
