import type { Selector } from '../../common/spiffe/selector.js';
import type { RegistrationEntry } from '../datastore/datastore.js';
import type { EntryIndex } from './entry-index.js';

export interface AgentIdentity {
  spiffeId: string;
  selectors: readonly Selector[];
}

/**
 * The entries an agent may obtain: those parented on the agent's own ID, or on a node alias (an entry parented on
 * the server's ID) whose selectors all match the agent's node selectors, then their children, transitively.
 * Node alias entries themselves are not served: they name groups of agents, not workloads.
 */
export function authorizedEntries(index: EntryIndex, agent: AgentIdentity, serverId: string): Map<string, RegistrationEntry> {
  return entriesUnder(index, authorizationRoots(index, agent, serverId));
}

/** The IDs an agent's authorized entries hang from: its own SPIFFE ID and those of the node aliases it matches. */
export function authorizationRoots(index: EntryIndex, agent: AgentIdentity, serverId: string): string[] {
  const have = new Set(agent.selectors.map((s) => `${s.type}:${s.value}`));
  const roots: string[] = [agent.spiffeId];
  for (const alias of index.childrenOf(serverId)) {
    if (alias.selectors.every((s) => have.has(`${s.type}:${s.value}`))) roots.push(alias.spiffeId);
  }
  return roots;
}

/** The entries parented on one of `roots`, then their children, transitively. */
export function entriesUnder(index: EntryIndex, roots: readonly string[]): Map<string, RegistrationEntry> {
  const parents = [...roots];
  const result = new Map<string, RegistrationEntry>();
  const visited = new Set<string>();
  while (parents.length > 0) {
    const parent = parents.pop()!;
    if (visited.has(parent)) continue;
    visited.add(parent);
    for (const e of index.childrenOf(parent)) {
      if (result.has(e.id)) continue;
      result.set(e.id, e);
      parents.push(e.spiffeId);
    }
  }
  return result;
}
