import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import { MeshidError, permissionDenied, unauthenticated } from '../../common/errors.js';
import { parseCertificate, type ParsedCertificate } from '../../common/x509/certificate.js';
import type { AttestedAgent } from '../datastore/datastore.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';

/** Prefixes of PERMISSION_DENIED messages the agent acts on. */
export const REATTEST_PREFIX = 'must re-attest: ';
export const BANNED_PREFIX = 'banned: ';

/** The refusal of an agent API call made without a client certificate (agent-call-gate.ts's too, before decoding). */
export const NO_AGENT_CERTIFICATE = 'this call needs the agent SVID as TLS client certificate (attest first)';

/** The refusal of a client certificate that passed the TLS check but is no agent SVID (a workload's, say). */
export const NOT_AN_AGENT_SVID = 'the client certificate is not an agent SVID of this trust domain';

/** The agent ID `cert` is an SVID for (its one URI SAN, under `agentIdPrefix`), or undefined when it is no agent SVID. */
export function agentSvidId(cert: ParsedCertificate, agentIdPrefix: string): string | undefined {
  const id = cert.uriSans[0];
  return cert.uriSans.length === 1 && id !== undefined && id.startsWith(agentIdPrefix) ? id : undefined;
}

export interface AgentLookup {
  getAgent(spiffeId: string): Promise<AttestedAgent | undefined>;
  retirePreviousAgentCert(spiffeId: string, currentSerial: string): Promise<void>;
}

/** An authenticated agent and the serial of the certificate it presented. */
export interface AuthenticatedAgent extends AttestedAgent {
  readonly presentedSerial: string;
  /** The certificate itself: a Sync stream re-checks it against the bundle when the bundle changes. */
  readonly presentedCert: ParsedCertificate;
  /** This call retired the previous SVID (the agent's first use of its renewed one). */
  readonly retiredPrevious: boolean;
}

/**
 * Authenticates an agent API call: the TLS layer has verified the client certificate against the trust bundle at
 * handshake; here, on every call, the certificate must be unexpired (a connection outlives its handshake) and be the
 * agent's current SVID, or the one it renewed from while it has not used the new one yet, and the agent must be
 * neither evicted nor banned. With `anchor`, the certificate must also still chain to the bundle as it is now (a root
 * revoked since the handshake cuts the connection's agent off, as it does a new connection). The first call with the
 * current SVID retires the previous one, as SPIRE does: a copy of an agent's certificate then dies at the agent's
 * next renewal instead of renewing itself alongside it. `parse` reads the certificate (the server passes the memo
 * the call gate filled: presented-certificates.ts).
 */
export async function authenticateAgent(
  call: ServerSurfaceCall,
  agents: AgentLookup,
  agentIdPrefix: string,
  now: number,
  anchor?: AgentSvidAnchor,
  parse: (der: Buffer) => ParsedCertificate = parseCertificate,
): Promise<AuthenticatedAgent> {
  const peer = call.getAuthContext()?.sslPeerCertificate;
  if (peer === undefined || peer.raw === undefined) {
    throw unauthenticated(NO_AGENT_CERTIFICATE);
  }
  const cert = parse(peer.raw);
  const id = agentSvidId(cert, agentIdPrefix);
  if (id === undefined) throw permissionDenied(NOT_AN_AGENT_SVID);
  const agent = await agents.getAgent(id);
  if (agent === undefined) {
    // An expired agent's record is pruned: its SVID's expiry, not "never attested", is what the operator can act on.
    if (cert.notAfter <= now) throw permissionDenied(expiredSvidRefusal(id, cert.notAfter, now));
    throw permissionDenied(`${REATTEST_PREFIX}agent ${id} is not attested (evicted or never attested)`);
  }
  if (agent.banned) throw permissionDenied(bannedRefusal(id));
  if (cert.notAfter <= now) throw permissionDenied(expiredSvidRefusal(id, cert.notAfter, now));
  if (anchor !== undefined && !anchor.signedByServer(cert, now)) throw permissionDenied(svidNotSignedByServer(id));
  if (anchor !== undefined && !anchor.chainsToBundle(cert, now)) throw permissionDenied(svidNotAnchored(id));
  let retiredPrevious = false;
  if (cert.serialHex === agent.certSerial) {
    if (agent.previousCertSerial !== undefined) {
      await agents.retirePreviousAgentCert(id, cert.serialHex);
      retiredPrevious = true;
    }
  } else if (cert.serialHex !== agent.previousCertSerial) {
    throw notCurrentSvid(id, cert, agent);
  }
  return { ...agent, presentedSerial: cert.serialHex, presentedCert: cert, retiredPrevious };
}

/** The refusal of a call of a banned agent (agent-call-gate.ts's too, for an SVID the server did not sign). */
export function bannedRefusal(agentId: string): string {
  // Each attestation makes a new agent ID, so lifting this one's ban (evict) would let nothing back: say what does.
  return `${BANNED_PREFIX}agent ${agentId} is banned: a new join token is what lets the host back (restart its agent with one; it attests as a new agent, under a new ID). Evicting this ID ("meshid-server agent evict --spiffe-id ${agentId}") only removes its record: no agent attests under it again`;
}

/** What is wrong with an agent SVID past its notAfter: the handlers' refusal, and the end of a Sync stream opened with it. */
export function svidExpired(agentId: string, notAfter: number): string {
  return `agent ${agentId}'s SVID expired at ${new Date(notAfter).toISOString()}`;
}

/**
 * The refusal of a call made with an agent SVID past its notAfter by the server's clock: on a connection opened
 * before it expired, or on a new one whose TLS check refused it for that (agent-call-gate.ts). meshid-agent presents
 * its SVID only while its own clock takes it for valid, so this is mostly a host clock behind the server's: the
 * server's reading goes with it, for the agent to tell that from an SVID it let expire (rejection.ts reads it).
 */
export function expiredSvidRefusal(agentId: string, notAfter: number, now: number): string {
  return (
    `${REATTEST_PREFIX}agent ${agentId}'s SVID expired at ${new Date(notAfter).toISOString()} by meshid-server's clock, which reads ` +
    `${new Date(now).toISOString()}; attest again with a new join token. An agent whose own clock still takes the SVID for valid ` +
    "runs behind the server's: synchronise the clocks (chrony or ntpd; timedatectl status)"
  );
}

/** The refusal of an agent SVID whose root has left the bundle since the connection's handshake. */
export function svidNotAnchored(agentId: string): string {
  return `${REATTEST_PREFIX}agent ${agentId}'s SVID no longer chains to the trust bundle (its root was revoked); attest again with a new join token`;
}

/**
 * The refusal of an agent SVID whose root had left the bundle before the connection's handshake, which therefore
 * refused it (an agent down across a `ca revoke --force`). The same remedy; it says where, so the two can be told apart.
 */
export function svidNotAnchoredAtHandshake(agentId: string): string {
  return (
    `${REATTEST_PREFIX}agent ${agentId}'s SVID was refused at the TLS handshake: it no longer chains to the trust bundle (its root ` +
    'was revoked); attest again with a new join token'
  );
}

/**
 * The refusal of an agent SVID that none of the server's intermediates signed, whether it passed the TLS check under
 * the bundle's roots or not: mostly a server whose data dir was replaced, or restored from a backup taken before that
 * intermediate was made. Not a revoked root, so the message must not send the operator looking for one.
 */
export function svidNotSignedByServer(agentId: string): string {
  return (
    `${REATTEST_PREFIX}agent ${agentId}'s SVID was signed by an intermediate CA this server does not hold ` +
    "(the server's data dir was replaced, or restored from a backup older than that CA, or the SVID is another server's); attest again with a new join token"
  );
}

/**
 * The refusal of an agent SVID that is neither the agent's current one nor the one it renewed from. The agent renews
 * and retires its previous SVID on first use, so an older SVID turning up means that a second holder of the agent's
 * identity renewed meanwhile: a copy of its data dir (a VM image made after attestation, a restored backup) runs on
 * another host, and whichever renewed last keeps the identity. An SVID signed after the record last changed is the
 * other way round: the renewal that made it is missing, so the server's datastore went back (restored from a backup).
 * Told apart by when the SVID was signed, not by its notAfter: after agent_svid_ttl is lowered, a copy's older SVID
 * ends later than the current one. Each gets its cause and remedy, since "not the current SVID" alone sends an
 * operator nowhere. `data` (agentId, supersededBy, presentedSerial) marks the first, for the server's own log line
 * (copied-agent-identities.ts).
 */
export function notCurrentSvid(agentId: string, cert: ParsedCertificate, agent: AttestedAgent, what = 'the client certificate'): MeshidError {
  if (cert.notBefore > agent.updatedAt) {
    return permissionDenied(
      `${REATTEST_PREFIX}${what} is newer than agent ${agentId}'s current SVID as the server recorded it ` +
        "(the server's datastore was restored from an older backup); attest again with a new join token",
    );
  }
  return new MeshidError(
    'permission_denied',
    `${REATTEST_PREFIX}${what} is no longer agent ${agentId}'s SVID (serial ${cert.serialHex}): another holder of this ` +
      "identity renewed it since (a copy of the agent's data dir, from a VM image or a backup, runs on another host), " +
      "and the copy that renewed last keeps it. Restart this host's agent with a new join token: it attests as a new agent",
    { data: { agentId, supersededBy: agent.certSerial, presentedSerial: cert.serialHex } },
  );
}
