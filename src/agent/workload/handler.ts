import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { unavailable } from '../../common/errors.js';
import { loadProto } from '../../common/grpc/proto.js';
import { serviceOf } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import { fetchJwtBundlesRpc, fetchX509BundlesRpc } from './bundles-rpc.js';
import { encodeOnce } from './encode-once.js';
import { fetchJwtSvidRpc } from './jwt-svid-rpc.js';
import { warnOversizedResponses } from './oversized-response.js';
import { validateJwtSvidRpc } from './validate-rpc.js';
import { workloadContext, type WorkloadApiDeps } from './workload-context.js';
import { fetchX509SvidRpc } from './x509-svid-rpc.js';

/** The .proto file and service name of the SPIFFE Workload API: no package (SPEC-NOTES §1, §13, §14.1). */
export const WORKLOAD_PROTO = 'workload/workload.proto';
export const WORKLOAD_SERVICE_NAME = 'SpiffeWorkloadAPI';

/**
 * The service definition to pass to grpc-js Server.addService with `workloadApiHandlers(...).implementation`. The
 * streams' responses are encoded once per response object (encodeOnce): streams with the same content share one.
 * With `oversized`, a response larger than gRPC clients take by default is logged there (warnOversizedResponses).
 */
export function workloadApiServiceDefinition(oversized?: { log: Logger; clock: Clock }): ServiceDefinition {
  const definition = encodeOnce(serviceOf(loadProto(WORKLOAD_PROTO), WORKLOAD_SERVICE_NAME), ['FetchX509SVID']);
  if (oversized === undefined) return definition;
  const log = oversized.log.child({ subsystem: 'workload-api' });
  return warnOversizedResponses(definition, ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTSVID', 'FetchJWTBundles'], log, oversized.clock);
}

export interface WorkloadApiService {
  /** FetchX509SVID, FetchX509Bundles, FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID for Server.addService. */
  readonly implementation: UntypedServiceImplementation;
  /** Streams open right now (each holds one cache subscription). */
  openStreams(): number;
  /** Ends every open stream with UNAVAILABLE (clients reconnect with backoff) and unsubscribes it: agent shutdown. */
  close(): void;
}

/**
 * Builds the SPIFFE Workload API (WL-API §4–§8; SPEC-NOTES §7, §8) over the agent's identity cache.
 *
 * Every call, in this order: the `workload.spiffe.io: true` header (INVALID_ARGUMENT; normally already refused by
 * workloadSecurityHeaderInterceptor before the handler runs — checked again here so a server assembled without the
 * interceptor still fails closed); request fields (INVALID_ARGUMENT); agent state present (UNAVAILABLE); `attest`
 * (UNAVAILABLE when it fails); then entitlement — a caller no entry matches gets PERMISSION_DENIED on FetchX509SVID,
 * FetchX509Bundles, FetchJWTSVID and FetchJWTBundles (default deny, SPEC-NOTES §8, §13) — on the two bundle RPCs
 * unless `allowUnauthenticatedVerifiers`, when such a caller gets the own trust domain's bundle.
 *
 * ValidateJWTSVID is the exception: it requires the header, agent state and a successful attestation (so only an
 * identifiable local process asks, and logs say which), but no entitlement. Validating hands out nothing secret,
 * relying parties that only verify tokens need not hold an identity (SPIRE serves them the same way), and the spec's
 * default-deny SHOULD covers the bundle RPCs only. It checks against the caller's bundles, as SPIRE does: the own
 * trust domain's and those the caller's entries federate with (none for a caller without entries), the key taken
 * only from the token subject's trust domain; a foreign token's claims are limited to sub, aud, exp and
 * `allowedForeignJwtClaims`.
 *
 * Streams attest once, when they open, and keep those selectors for their life (as SPIRE does); the cache tells them
 * about changes (IdentityStream).
 */
export function workloadApiHandlers(deps: WorkloadApiDeps): WorkloadApiService {
  const ctx = workloadContext(deps);
  const { open } = ctx;

  const implementation: UntypedServiceImplementation = {
    FetchX509SVID: fetchX509SvidRpc(ctx),
    FetchX509Bundles: fetchX509BundlesRpc(ctx),
    FetchJWTBundles: fetchJwtBundlesRpc(ctx),
    FetchJWTSVID: fetchJwtSvidRpc(ctx),
    ValidateJWTSVID: validateJwtSvidRpc(ctx),
  };

  return {
    implementation,
    openStreams: () => open.size,
    close: () => {
      for (const stream of [...open]) stream.fail(unavailable('the agent is shutting down'));
    },
  };
}
