import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import { permissionDenied, unauthenticated } from '../../common/errors.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { AttestedAgent } from '../datastore/datastore.js';

/** Prefixes of PERMISSION_DENIED messages the agent acts on. */
export const REATTEST_PREFIX = 'must re-attest: ';
export const BANNED_PREFIX = 'banned: ';

export interface AgentLookup {
  getAgent(spiffeId: string): Promise<AttestedAgent | undefined>;
}

/**
 * Authenticates an agent API call: the TLS layer has verified the client certificate against the trust bundle; here
 * the certificate must be the agent's current SVID (or the one it just renewed from) and the agent must be neither
 * evicted nor banned.
 */
export async function authenticateAgent(call: ServerSurfaceCall, agents: AgentLookup, agentIdPrefix: string): Promise<AttestedAgent> {
  const peer = call.getAuthContext()?.sslPeerCertificate;
  if (peer === undefined || peer.raw === undefined) {
    throw unauthenticated('this call needs the agent SVID as TLS client certificate (attest first)');
  }
  const cert = parseCertificate(peer.raw);
  const id = cert.uriSans[0];
  if (cert.uriSans.length !== 1 || id === undefined || !id.startsWith(agentIdPrefix)) {
    throw permissionDenied('the client certificate is not an agent SVID of this trust domain');
  }
  const agent = await agents.getAgent(id);
  if (agent === undefined) throw permissionDenied(`${REATTEST_PREFIX}agent ${id} is not attested (evicted or never attested)`);
  if (agent.banned) throw permissionDenied(`${BANNED_PREFIX}agent ${id} is banned; an operator must remove the ban and evict it`);
  if (cert.serialHex !== agent.certSerial && cert.serialHex !== agent.previousCertSerial) {
    throw permissionDenied(`${REATTEST_PREFIX}the client certificate is not agent ${id}'s current SVID`);
  }
  return agent;
}
