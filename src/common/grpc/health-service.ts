import type { ServerWritableStream, UntypedServiceImplementation, sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { notFound } from '../errors.js';
import { toServiceError } from '../grpc-status.js';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/**
 * The standard gRPC health service (grpc.health.v1.Health). `serving()` decides the answer for the whole server
 * ("") and for each named service in `services`.
 */
export function healthService(services: readonly string[], serving: () => boolean): UntypedServiceImplementation {
  const statusOf = (service: string): ServingStatus => {
    if (service !== '' && !services.includes(service)) return 'SERVICE_UNKNOWN';
    return serving() ? 'SERVING' : 'NOT_SERVING';
  };
  return {
    Check: (call: ServerUnaryCall<{ service?: string }, unknown>, callback: sendUnaryData<unknown>) => {
      const s = statusOf(call.request.service ?? '');
      // Through the one mapping: it bounds the name quoted, which comes from the caller.
      if (s === 'SERVICE_UNKNOWN') callback(toServiceError(notFound(`unknown service "${call.request.service}"`)));
      else callback(null, { status: s });
    },
    Watch: (call: ServerWritableStream<{ service?: string }, unknown>) => {
      // A single answer; watchers re-check on reconnect. Enough for probes, which is what this is for.
      call.write({ status: statusOf(call.request.service ?? '') });
    },
  };
}
