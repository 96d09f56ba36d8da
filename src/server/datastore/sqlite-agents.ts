import { alreadyExists, notFound } from '../../common/errors.js';
import { joinTokenSha256 } from '../../common/join-token-fingerprint.js';
import type { AttestedAgent, NewAgent } from './datastore.js';
import { normalizeSelectors } from './entry-identity.js';
import { requireText, requireTime } from './record-guards.js';
import { agentFromRow, type AgentRow } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * Attested agents in the SQLite datastore: an agent is created in the same transaction that consumes its join token,
 * keeps its current and previous SVID serials across renewals, and every eviction, ban or prune is an 'agent' change
 * naming the agents (Change.agentIds), which the sync hub acts on. Each function runs inside the datastore's read or
 * write.
 */

export function createAgent(tx: SqliteScope, agent: NewAgent, options: { joinToken?: string } = {}): AttestedAgent {
  requireText('agent spiffeId', agent.spiffeId);
  requireText('agent datacenter', agent.datacenter);
  requireText('agent certSerial', agent.certSerial);
  for (const t of ['certNotAfter', 'attestedAt', 'updatedAt'] as const) requireTime(`agent ${t}`, agent[t]);
  if (tx.s.agentById.get(agent.spiffeId) !== undefined) throw alreadyExists(`agent ${agent.spiffeId} already exists`);
  if (options.joinToken !== undefined && tx.s.consumeJoinToken.get(joinTokenSha256(options.joinToken)) === undefined) {
    throw notFound('the join token is unknown, already used or revoked');
  }
  const stored: AttestedAgent = { ...agent, selectors: normalizeSelectors(agent.selectors), banned: agent.banned === true };
  tx.s.insertAgent.run(
    stored.spiffeId, stored.datacenter, JSON.stringify(stored.selectors), stored.certSerial, stored.certNotAfter,
    stored.previousCertSerial ?? null, stored.attestedAt, stored.updatedAt, stored.banned ? 1 : 0, stored.certIssuerId ?? null,
    stored.agentVersion || null,
  );
  return stored;
}

export function getAgent(tx: SqliteScope, spiffeId: string): AttestedAgent | undefined {
  const row = tx.s.agentById.get(spiffeId) as AgentRow | undefined;
  return row === undefined ? undefined : agentFromRow(row);
}

export function listAgents(tx: SqliteScope, filter: { datacenter?: string } = {}): AttestedAgent[] {
  const rows = (filter.datacenter === undefined ? tx.s.allAgents.all() : tx.s.agentsByDatacenter.all(filter.datacenter)) as AgentRow[];
  return rows.map(agentFromRow);
}

export function countLiveAgentsByDatacenter(tx: SqliteScope, now: number): Map<string, number> {
  const rows = tx.s.liveAgentsByDatacenter.all(now) as Array<{ datacenter: string; agents: number }>;
  return new Map(rows.map((r) => [r.datacenter, r.agents]));
}

export function updateAgentCert(tx: SqliteScope, spiffeId: string, certSerial: string, certNotAfter: number, renewedFrom: string, issuerId?: string): AttestedAgent {
  requireText('agent certSerial', certSerial);
  requireText('agent renewedFrom', renewedFrom);
  requireTime('agent certNotAfter', certNotAfter);
  if (tx.s.updateAgentCert.run(certSerial, certNotAfter, renewedFrom, issuerId ?? null, tx.clock.now(), spiffeId).changes === 0) {
    throw notFound(`agent ${spiffeId} not found`);
  }
  return agentFromRow(tx.s.agentById.get(spiffeId) as AgentRow);
}

export function setAgentVersion(tx: SqliteScope, spiffeId: string, version: string | undefined): void {
  if (version !== undefined) requireText('agent version', version);
  if (tx.s.setAgentVersion.run(version ?? null, spiffeId).changes === 0) throw notFound(`agent ${spiffeId} not found`);
}

export function retirePreviousAgentCert(tx: SqliteScope, spiffeId: string, currentSerial: string): void {
  tx.s.retirePreviousAgentCert.run(spiffeId, currentSerial);
}

export function evictAgent(tx: SqliteScope, spiffeId: string): void {
  if (tx.s.deleteAgent.run(spiffeId).changes === 0) throw notFound(`agent ${spiffeId} not found`);
  tx.bumpAgents([spiffeId]);
}

export function banAgent(tx: SqliteScope, spiffeId: string): AttestedAgent {
  if (tx.s.banAgent.run(tx.clock.now(), spiffeId).changes === 0) throw notFound(`agent ${spiffeId} not found`);
  tx.bumpAgents([spiffeId]);
  return agentFromRow(tx.s.agentById.get(spiffeId) as AgentRow);
}

export function pruneAgents(tx: SqliteScope, now: number): string[] {
  const pruned = (tx.s.pruneAgents.all(now) as Array<{ spiffe_id: string }>).map((r) => r.spiffe_id);
  if (pruned.length > 0) tx.bumpAgents(pruned);
  return pruned;
}
