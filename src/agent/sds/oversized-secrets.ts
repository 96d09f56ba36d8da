import type { ServiceDefinition } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { withResponseSerializers, type Serialize } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import { LogThrottle } from '../../common/log-throttle.js';
import { DEFAULT_CLIENT_RECEIVE_LIMIT } from '../workload/oversized-response.js';
import { NoncedResponse } from './nonced-response.js';

/** How many secrets a response carries, for the warning (a StreamSecrets body is shared: NoncedResponse). */
function resourceCount(value: unknown): number | undefined {
  const message = value instanceof NoncedResponse ? value.body : value;
  const resources = (message as { resources?: unknown[] }).resources;
  return resources?.length;
}

/**
 * Response serializers that log a warning for each SDS message larger than DEFAULT_CLIENT_RECEIVE_LIMIT (one line a
 * minute per method). Envoy's `google_grpc` SDS client and any grpc-go or grpc-js client refuse it as
 * RESOURCE_EXHAUSTED after the agent sent it all, reconnect, ask for the same names and are refused again, for ever;
 * the client's log says only "received message larger than max". `envoy_grpc` takes any size unless its
 * `max_receive_message_length` is set. A StreamSecrets or FetchSecrets answer carries every secret subscribed (the
 * state of the world) and cannot be cut: a wildcard of a caller with ~2,200 identities passes 4 MiB (P-256: ~1.9 KB
 * a secret), as does an `ALL` of some MB of federated bundles. DeltaSecrets cuts its answers (response-size.ts), so
 * only a single secret that large gets here from it.
 */
export function warnOversizedSecrets(definition: ServiceDefinition, methods: readonly string[], log: Logger, clock: Clock): ServiceDefinition {
  const throttle = new LogThrottle(clock);
  const watched = (method: string) => (serialize: Serialize): Serialize => (value) => {
    const bytes = serialize(value);
    if (bytes.length > DEFAULT_CLIENT_RECEIVE_LIMIT) {
      const admitted = throttle.admit(method);
      if (admitted !== undefined) {
        const count = resourceCount(value);
        log.warn(
          { rpc: method, bytes: bytes.length, ...(count !== undefined && { count }), ...admitted },
          'an SDS response is larger than the 4 MiB gRPC clients accept by default (Envoy\'s google_grpc, grpc-go, grpc-js): ' +
            'they refuse it (RESOURCE_EXHAUSTED) and ask again for ever; subscribe fewer secrets per stream (Envoy asks one per stream), ' +
            "use DeltaSecrets, which sends them in parts, or raise the client's max receive message size",
        );
      }
    }
    return bytes;
  };
  return methods.reduce((d, method) => withResponseSerializers(d, [method], watched(method)), definition);
}
