import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { invalidArgument, isMeshidError, unavailable } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { Selector } from '../../common/spiffe/selector.js';
import { connectionOutlivedCaller } from '../attestor/attestation-failure.js';
import type { PeerInfo } from '../attestor/peer-credentials.js';
import { checkSecurityHeader, WORKLOAD_API_PATH_PREFIX } from '../workload/security-header.js';

/**
 * Cross-cutting checks of the agent's Unix socket.
 *
 * The `workload.spiffe.io` header check is a grpc-js ServerInterceptor: it needs nothing but the method path and the
 * request metadata, and an interceptor is the one place that runs before the request message is decoded and before
 * any handler — so "INVALID_ARGUMENT before any message, before attestation" (SPEC-NOTES §7) holds by construction,
 * for every Workload API method at once. It only looks at `/SpiffeWorkloadAPI/` methods: SDS must work without the
 * header (Envoy never sends it, SPEC-NOTES §13), and so must the health service.
 *
 * Only the per-uid call limit (uid-call-limit.ts) runs earlier, so a header-less call from a uid at its limit hears
 * RESOURCE_EXHAUSTED, and INVALID_ARGUMENT once the uid is below it. That order is deliberate: the limit must be the
 * first interceptor, as it counts and resets grpc-js's own call (HTTP/2 stream), which a later interceptor does not
 * get, so any check put before it switches the limit off; and the call is refused either way, before its message is
 * decoded or its caller attested, which is all the header (an SSRF guard) asks.
 *
 * The peer lookup and attestation are NOT an interceptor but a plain function (`peerAttestation`) that the composition
 * root passes to the Workload API and SDS handlers as their `attest` dependency. Reasons: the handlers need the
 * result (selectors), and grpc-js gives an interceptor no per-call context to hand values to the handler (smuggling
 * them through metadata would make them forgeable by the client, or need a side table keyed by object identity);
 * the handlers must order the checks themselves (agent state before attestation, request fields before both for
 * unary calls); and streams attest once per stream while unary calls attest per call. The function form keeps each
 * handler testable with a fixed `attest` and leaves the OS behind the attestor.
 */

/**
 * Refuses a Workload API call whose metadata lacks `workload.spiffe.io: true` (exactly one value) with
 * INVALID_ARGUMENT as soon as the metadata arrives. The call's message and half-close are never passed on, so the
 * handler never runs. Install after the base ones:
 * `new grpc.Server({ ...BASE_SERVER_OPTIONS, interceptors: [...BASE_INTERCEPTORS, workloadSecurityHeaderInterceptor] })`.
 */
export const workloadSecurityHeaderInterceptor: ServerInterceptor = (methodDescriptor, call) => {
  if (!methodDescriptor.path.startsWith(WORKLOAD_API_PATH_PREFIX)) return new ServerInterceptingCall(call);
  return new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          try {
            checkSecurityHeader(metadata);
          } catch (error) {
            const { code, details, metadata } = toServiceError(isMeshidError(error) ? error : invalidArgument('security header check failed'));
            call.sendStatus({ code, details, metadata });
            return;
          }
          nextMetadata(metadata);
        },
      }),
  });
};

/** What peerAttestation needs: the socket's peer table (UdsServer.peerOf) and the workload attestor. */
export interface PeerAttestationDeps {
  /** The connected peer behind `call.getPeer()`, or undefined for a connection the socket server did not record. */
  peerOf(peer: string): PeerInfo | undefined;
  attestor: { attest(peer: PeerInfo): readonly Selector[] };
  /** Closes a connection whose caller is gone or changed ids (UdsServer.retire); see connectionOutlivedCaller. */
  retire?(peer: string): void;
}

/**
 * The `attest(call)` function for the Workload API and SDS handlers: looks the connection up in the peer table and
 * attests that process. An unknown peer fails closed. Attestation failures are UNAVAILABLE (SPEC-NOTES §7: "workload
 * attestation failed"); an unexpected exception from the attestor is treated the same way rather than as a success.
 * When the failure would repeat on every call of the connection (the connecting process exited or changed ids), the
 * connection is also retired, so the client reconnects and is attested as what it is now.
 */
export function peerAttestation(deps: PeerAttestationDeps): (call: { getPeer(): string }) => readonly Selector[] {
  return (call) => {
    const key = call.getPeer();
    const peer = deps.peerOf(key);
    if (peer === undefined) throw unavailable('workload attestation failed: the connection has no recorded peer credentials');
    try {
      return deps.attestor.attest(peer);
    } catch (error) {
      if (connectionOutlivedCaller(error)) deps.retire?.(key);
      if (isMeshidError(error)) throw error;
      throw unavailable('workload attestation failed', error);
    }
  };
}
