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
  const have = new Set(agent.selectors.map((s) => `${s.type}:${s.value}`));
  const parents: string[] = [agent.spiffeId];
  for (const alias of index.childrenOf(serverId)) {
    if (alias.selectors.every((s) => have.has(`${s.type}:${s.value}`))) parents.push(alias.spiffeId);
  }
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
