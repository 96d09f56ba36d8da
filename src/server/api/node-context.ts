import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { MeshidError } from '../../common/errors.js';
import type { ParsedCsr } from '../../common/x509/csr.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import type { CaManager } from '../ca/ca-manager.js';
import type { AttestedAgent, Datastore, RegistrationEntry } from '../datastore/datastore.js';
import { AuthorizedSets } from '../entries/authorized-sets.js';
import { authenticateAgent, type AuthenticatedAgent } from './agent-auth.js';
import type { AgentCallBudgets } from './agent-call-budgets.js';
import type { AgentSvidAnchor } from './agent-svid-anchor.js';
import { CopiedAgentIdentities } from './copied-agent-identities.js';
import type { PresentedCertificates } from './presented-certificates.js';
import type { SigningLimits } from './signing-limits.js';
import type { SyncHub } from './sync-hub.js';

export interface NodeServiceDeps {
  trustDomain: string;
  datacenters: readonly string[];
  agentSvidTtlMs: number;
  /** The server's current defaults and limits, applied to entries when signing (signedTtlMs). */
  ttls: { defaultX509SvidTtlMs: number; maxX509SvidTtlMs: number; defaultJwtSvidTtlMs: number; maxJwtSvidTtlMs: number };
  ds: Datastore;
  ca: CaManager;
  hub: SyncHub;
  limiter: SigningLimits;
  /** Sync opens and renewals, charged before decoding by agent-call-gate.ts (the same object): only refunds here. */
  budgets: AgentCallBudgets;
  /** Shared with agent-call-gate.ts, so a leaf's issuer is looked up once for both. */
  anchor: AgentSvidAnchor;
  /** Shared with agent-call-gate.ts, so a call's client certificate is parsed once for both. */
  certificates: PresentedCertificates;
  clock: Clock;
  log: Logger;
}

/** An agent SVID as the datastore records it: `issuerId` is the CA journal ID of the intermediate that signed it. */
export interface AgentSvid {
  chain: Buffer[];
  notAfter: number;
  serial: string;
  issuerId: string;
}

/** Where every agent SVID's SPIFFE ID starts: the agents' part of the trust domain. */
export function agentIdPrefix(trustDomain: string): string {
  return `spiffe://${trustDomain}/meshid/agent/`;
}

/**
 * What the agent API's handlers share, one per listener (node-service.ts builds it): a call's authentication, with
 * the record of renewals that Renew feeds and that tells a copied identity from the agent's own late traffic, on unary
 * calls and Sync streams alike; each agent's authorized set, read by the signing calls and dropped when its Sync
 * stream ends; the signing of an agent SVID, Attest's first and Renew's next. State one handler alone uses (the open
 * Sync streams, the log of refused attestations) stays in that handler's file.
 */
export interface NodeContext {
  deps: NodeServiceDeps;
  agentPrefix: string;
  copiedIdentities: CopiedAgentIdentities;
  authorizedSets: AuthorizedSets;
  auth: (call: Parameters<typeof authenticateAgent>[0]) => Promise<AuthenticatedAgent>;
  authorized: (agent: AttestedAgent) => ReadonlyMap<string, RegistrationEntry>;
  signAgentSvid: (agentId: string, datacenter: string, csr: ParsedCsr) => AgentSvid;
}

export function nodeContext(deps: NodeServiceDeps): NodeContext {
  const { ds, ca, hub, anchor, certificates, clock, log } = deps;
  const serverId = `spiffe://${deps.trustDomain}/meshid/server`;
  const agentPrefix = agentIdPrefix(deps.trustDomain);
  const copiedIdentities = new CopiedAgentIdentities(clock, log);
  const auth = async (call: Parameters<typeof authenticateAgent>[0]): Promise<AuthenticatedAgent> => {
    const agent = await authenticateAgent(call, ds, agentPrefix, clock.now(), anchor, (der) => certificates.parse(der, { authenticated: true })).catch((err: unknown) => {
      if (err instanceof MeshidError) throw copiedIdentities.refused(err, call.getPeer());
      throw err;
    });
    // The agent has just retired the SVID it renewed from: a Sync stream still running on that one must end.
    if (agent.retiredPrevious) hub.emit({ kind: 'agent', spiffeIds: new Set([agent.spiffeId]) });
    return agent;
  };

  const authorizedSets = new AuthorizedSets(hub.index, serverId);
  const authorized = (agent: AttestedAgent): ReadonlyMap<string, RegistrationEntry> => authorizedSets.of(agent);

  const signAgentSvid = (agentId: string, datacenter: string, csr: ParsedCsr): AgentSvid => {
    const signed = ca.signX509Svid({ datacenter, publicKey: csr.publicKey, spiffeId: agentId, ttlMs: deps.agentSvidTtlMs });
    return { chain: signed.chain, notAfter: signed.notAfter, serial: parseCertificate(signed.chain[0]!).serialHex, issuerId: signed.authorityId };
  };

  return { deps, agentPrefix, copiedIdentities, authorizedSets, auth, authorized, signAgentSvid };
}
