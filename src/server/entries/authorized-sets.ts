import type { RegistrationEntry } from '../datastore/datastore.js';
import { authorizationRoots, entriesUnder, type AgentIdentity } from './authorized-entries.js';
import type { EntryIndex } from './entry-index.js';

/** Far above the agents one server holds streams for; a bound only against agents that sign without ever syncing. */
const MAX_AGENTS = 50_000;

interface HeldSet {
  generation: number;
  selectorsKey: string;
  /** The agent's own SPIFFE ID and the node aliases it matched. */
  roots: readonly string[];
  entries: Map<string, RegistrationEntry>;
}

/**
 * Each agent's authorized entries, kept while the entry index and the agent's selectors stay as they were: a signing
 * check is then a map lookup, not a walk of the entry tree. An agent's set is dropped when it has no Sync stream
 * left (forget), so agents that come and go (short-lived nodes attesting under new IDs) do not accumulate.
 *
 * An entry change reaches every Sync stream, and walking each agent's tree again for it cost the server ~1.6 µs per
 * entry per agent on the event loop (1,000 agents holding 2,000 entries: 3.2 s of CPU for one entry created under one
 * agent). A set is therefore kept, the same map, through changes whose entries hung (before or after) from no parent
 * it reached: such a change cannot add to it or take from it, and the stream's diff sees the same map and sends
 * nothing.
 */
export class AuthorizedSets {
  private readonly sets = new Map<string, HeldSet>();

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
    if (hit && hit.selectorsKey === selectorsKey) {
      if (hit.generation === this.index.generation) return hit.entries;
      if (this.unchangedSince(hit)) {
        hit.generation = this.index.generation;
        return hit.entries;
      }
    }
    const roots = authorizationRoots(this.index, agent, this.serverId);
    const entries = entriesUnder(this.index, roots);
    if (this.sets.size >= MAX_AGENTS && hit === undefined) this.sets.clear();
    this.sets.set(agent.spiffeId, { generation: this.index.generation, selectorsKey, roots, entries });
    return entries;
  }

  forget(agentId: string): void {
    this.sets.delete(agentId);
  }

  /**
   * Whether no change since the set was computed touched a parent it reached. The first changed entry on any path
   * into or out of the set hangs from a root or from an unchanged entry of the set, so the parents the changes
   * touched are enough; a node alias changed (parented on the server) may change the roots, so it counts as touched.
   */
  private unchangedSince(held: HeldSet): boolean {
    const changes = this.index.touchedSince(held.generation);
    if (changes === undefined) return false;
    let touched = 0;
    for (const parents of changes) touched += parents.size;
    // Looking up more parents than the set holds entries would cost more than walking it again.
    if (touched > held.entries.size + held.roots.length) return false;
    for (const parents of changes) {
      for (const parent of parents) {
        if (parent === this.serverId || held.roots.includes(parent)) return false;
        for (const id of this.index.idsWithSpiffeId(parent) ?? []) if (held.entries.has(id)) return false;
      }
    }
    return true;
  }
}
