import type { RegistrationEntry } from '../datastore/datastore.js';
import { authorizedEntries, type AgentIdentity } from './authorized-entries.js';
import type { EntryIndex } from './entry-index.js';

/** Far above the agents one server holds streams for; a bound only against agents that sign without ever syncing. */
const MAX_AGENTS = 50_000;

/**
 * Each agent's authorized entries, kept while the entry index and the agent's selectors stay as they were: a signing
 * check is then a map lookup, not a walk of the entry tree. An agent's set is dropped when it has no Sync stream
 * left (forget), so agents that come and go (short-lived nodes attesting under new IDs) do not accumulate.
 */
export class AuthorizedSets {
  private readonly sets = new Map<string, { revision: number; selectorsKey: string; entries: Map<string, RegistrationEntry> }>();

  constructor(
    private readonly index: EntryIndex,
    private readonly serverId: string,
  ) {}

  get size(): number {
    return this.sets.size;
  }

  of(agent: AgentIdentity): Map<string, RegistrationEntry> {
    const selectorsKey = agent.selectors.map((s) => `${s.type}:${s.value}`).join('\n');
    const hit = this.sets.get(agent.spiffeId);
    if (hit && hit.revision === this.index.revision && hit.selectorsKey === selectorsKey) return hit.entries;
    const entries = authorizedEntries(this.index, agent, this.serverId);
    if (this.sets.size >= MAX_AGENTS && hit === undefined) this.sets.clear();
    this.sets.set(agent.spiffeId, { revision: this.index.revision, selectorsKey, entries });
    return entries;
  }

  forget(agentId: string): void {
    this.sets.delete(agentId);
  }
}
