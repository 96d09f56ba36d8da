import { Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import { unauthenticated } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';

const NODE_SERVICE_PATH_PREFIX = '/meshid.agent.v1.Node/';
/** The one agent API call made before the agent has an SVID. */
const ATTEST_PATH = '/meshid.agent.v1.Node/Attest';

/** The refusal of an agent API call made without a client certificate (also agent-auth.ts's, for the handlers). */
export const NO_AGENT_CERTIFICATE = 'this call needs the agent SVID as TLS client certificate (attest first)';

/**
 * Refuses every Node call but Attest that comes without a verified client certificate, UNAUTHENTICATED, as soon as
 * its metadata arrives: the request is then never read nor decoded. Decoding happens before any handler runs, and a
 * request of the maximum size can be costly to decode (a Sync request of ~4 MB holding two million empty `known`
 * items takes the server ~0.9 s of CPU), so without this anyone who reaches the port could spend that per call. The
 * handlers still authenticate every call (agent-auth.ts): this only moves the cheapest refusal before the decoding.
 * Install after the base ones: `interceptors: [...BASE_INTERCEPTORS, agentCertificateRequiredInterceptor]`.
 */
export const agentCertificateRequiredInterceptor: ServerInterceptor = (methodDescriptor, call) => {
  const path = methodDescriptor.path;
  if (!path.startsWith(NODE_SERVICE_PATH_PREFIX) || path === ATTEST_PATH) return new ServerInterceptingCall(call);
  return new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          if (call.getAuthContext()?.sslPeerCertificate?.raw === undefined) {
            const { code, details } = toServiceError(unauthenticated(NO_AGENT_CERTIFICATE));
            call.sendStatus({ code, details, metadata: new Metadata() });
            return;
          }
          nextMetadata(metadata);
        },
      }),
  });
};
