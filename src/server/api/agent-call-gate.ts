import { ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import { permissionDenied, unauthenticated, type MeshidError } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc-status.js';
import type { ParsedCertificate } from '../../common/x509/certificate.js';
import { agentSvidId, bannedRefusal, expiredSvidRefusal, NO_AGENT_CERTIFICATE, NOT_AN_AGENT_SVID, svidNotAnchoredAtHandshake, svidNotSignedByServer, type AgentLookup } from './agent-auth.js';
import { AttestAttempts } from './attest-attempts.js';
import type { AgentCallBudgets } from './agent-call-budgets.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';
import type { PresentedCertificates } from './presented-certificates.js';
import type { ConnectionEnds, RefusedClientCertificates } from './refused-client-certificates.js';

const NODE_SERVICE_PATH_PREFIX = '/meshid.agent.v1.Node/';
/** The one agent API call made before the agent has an SVID. */
const ATTEST_PATH = '/meshid.agent.v1.Node/Attest';

export interface AgentCallGateDeps {
  /** `spiffe://<trust domain>/meshid/agent/`. */
  agentIdPrefix: string;
  anchor: AgentSvidAnchor;
  budgets: AgentCallBudgets;
  /** Shared with the handlers (agent-auth.ts), so a call's certificate is parsed once for both. */
  certificates: PresentedCertificates;
  /** The datastore's agents: only to tell a banned agent so when its SVID is one the server did not sign. */
  agents: Pick<AgentLookup, 'getAgent'>;
  /** The expired (or revoked-root) agent SVIDs TLS refused, by connection (filled by agent-api-connections.ts): to say why. */
  refused?: RefusedClientCertificates;
  clock: Clock;
}

/**
 * Judges every Node call as soon as its metadata arrives, before its request is read: grpc-js decodes a
 * request before any handler runs, and a request of the maximum size can be costly to decode (a Sync request of
 * ~4 MB holding two million empty `known` items takes the server ~0.45–0.9 s of CPU). Refused here, a request is
 * never decoded:
 * - without a verified client certificate, UNAUTHENTICATED (anyone who reaches the port); but an agent SVID the
 *   server signed that TLS refused as expired by the server's clock gets PERMISSION_DENIED saying so and naming both
 *   times, as on a connection opened before it expired: its agent takes it for valid, so its clock is behind;
 * - with one that is no agent SVID of this trust domain (a workload's X.509-SVID passes the TLS check too), or one
 *   none of the server's intermediates signed (another CA under the same upstream roots; an SVID from an
 *   intermediate a server restored from a backup never held), PERMISSION_DENIED, as the handlers would answer (saying
 *   the SVID expired when it has, and that the agent is banned when it is, as they do);
 * - when the agent's budget for the method (agent-call-budgets.ts) is spent, RESOURCE_EXHAUSTED with the retry time;
 * - Attest, made before the agent has a certificate, when its source address has spent its attempts
 *   (attest-attempts.ts), UNAVAILABLE with the retry time.
 * The budgets are keyed by the agent ID in the certificate, which the server's own signature vouches for. The
 * handlers still authenticate every call in full (agent-auth.ts: the datastore's view, expiry, the bundle as it is
 * now): this only moves the cheap refusals before the decoding. Install after the base interceptors:
 * `interceptors: [...BASE_INTERCEPTORS, agentCallGate(deps)]`.
 */
export function agentCallGate(deps: AgentCallGateDeps): ServerInterceptor {
  /**
   * The handlers look the agent up first, and a banned agent hears `banned:` whatever its SVID: it stops and withdraws
   * what it serves, where `must re-attest:` would have it serve its cached SVIDs on and look for a join token. Looked
   * up only for an SVID the server did not sign (rare: a restored server's agents) or one TLS refused as expired (an
   * agent whose clock is behind), one indexed read.
   */
  const unlessBanned = (agentId: string, refusal: MeshidError): Promise<MeshidError> =>
    deps.agents.getAgent(agentId).then(
      (agent) => (agent?.banned === true ? permissionDenied(bannedRefusal(agentId)) : refusal),
      () => refusal,
    );
  /**
   * An agent SVID TLS refused, expired by the server's clock, under a revoked root or signed by no CA this server
   * holds (judged once, when the connection was admitted): refused as expired or cut off, never authenticated.
   * Anything else TLS refused (a certificate not yet valid by this clock, say) is as good as no certificate.
   */
  const unverified = (ends: ConnectionEnds): MeshidError | Promise<MeshidError> => {
    const svid = deps.refused?.of(ends);
    const now = deps.clock.now();
    if (svid === undefined) return unauthenticated(NO_AGENT_CERTIFICATE);
    // Expired by now, whatever else TLS held against it at the handshake: the expiry is what the operator acts on.
    if (svid.notAfter <= now) return unlessBanned(svid.agentId, permissionDenied(expiredSvidRefusal(svid.agentId, svid.notAfter, now)));
    const why = svid.reason === 'unanchored' ? svidNotAnchoredAtHandshake(svid.agentId) : svidNotSignedByServer(svid.agentId);
    return unlessBanned(svid.agentId, permissionDenied(why));
  };
  const refusal = (path: string, raw: Buffer | undefined, ends: ConnectionEnds): MeshidError | Promise<MeshidError> | undefined => {
    if (raw === undefined) return unverified(ends);
    let cert: ParsedCertificate;
    try {
      cert = deps.certificates.parse(raw);
    } catch {
      // Verified by the TLS layer, yet beyond meshid's DER reader: no certificate the server issued.
      return permissionDenied(NOT_AN_AGENT_SVID);
    }
    const agentId = agentSvidId(cert, deps.agentIdPrefix);
    if (agentId === undefined) return permissionDenied(NOT_AN_AGENT_SVID);
    const now = deps.clock.now();
    if (!deps.anchor.signedByServer(cert, now)) {
      // Expired, it is refused whoever signed it, and the expiry is what the operator acts on: an intermediate no
      // longer held is most often one pruned after the SVIDs it signed expired.
      return unlessBanned(agentId, permissionDenied(cert.notAfter <= now ? expiredSvidRefusal(agentId, cert.notAfter, now) : svidNotSignedByServer(agentId)));
    }
    return deps.budgets.charge(path, agentId);
  };
  const attestAttempts = new AttestAttempts(deps.clock);
  return (methodDescriptor, call) => {
    const path = methodDescriptor.path;
    if (!path.startsWith(NODE_SERVICE_PATH_PREFIX)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const settle = (refused: MeshidError | undefined): void => {
              if (refused !== undefined) {
                // With the metadata: a budget's refusal carries its wait as retry pushback.
                const { code, details, metadata } = toServiceError(refused);
                call.sendStatus({ code, details, metadata });
                return;
              }
              nextMetadata(metadata);
            };
            const refused = path === ATTEST_PATH ? attestAttempts.charge(call.getPeer()) : refusal(path, call.getAuthContext()?.sslPeerCertificate?.raw, call.getConnectionInfo());
            // grpc-js reads no request while the metadata is held: a refusal looked up is still made before decoding.
            if (refused instanceof Promise) void refused.then(settle);
            else settle(refused);
          },
        }),
    });
  };
}
