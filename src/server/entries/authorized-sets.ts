import { authorizationRoots, type AgentIdentity } from './authorized-entries.js';
import { AuthorizedSet } from './authorized-set.js';
import type { EntryIndex } from './entry-index.js';
import { Subtrees } from './subtrees.js';

/** Far above the agents one server holds streams for; a bound only against agents that sign without ever syncing. */
const MAX_AGENTS = 50_000;

interface HeldSet {
  generation: number;
  selectorsKey: string;
  /** The agent's own SPIFFE ID and the node aliases it matched. */
  roots: readonly string[];
  set: AuthorizedSet;
}

/**
 * Each agent's authorized entries, kept while the entry index stays as it was: a signing check is then a lookup, not
 * a walk of the entry tree. An agent's set is dropped when it has no Sync stream left (forget), so agents that come and
 * go (short-lived nodes attesting under new IDs) do not accumulate.
 *
 * An entry change reaches every Sync stream. A set is the union of its roots' subtrees (Subtrees: each walked at most
 * once per change, shared by every agent matching the same node alias), and is kept, the same object, through changes
 * that left each of its subtrees and its roots as they were, so the stream's diff sees the same set and sends
 * nothing. A change that did reach it makes a new set naming what may differ (AuthorizedSet.changedSince), so each
 * agent's cost is the change's size, not its set's (before: 300 agents under one alias x 2,004 entries, 563 ms of CPU
 * per change).
 */
export class AuthorizedSets {
  private readonly sets = new Map<string, HeldSet>();
  private readonly subtrees: Subtrees;

  constructor(
    private readonly index: EntryIndex,
    private readonly serverId: string,
  ) {
    this.subtrees = new Subtrees(index);
  }

  get size(): number {
    return this.sets.size;
  }

  of(agent: AgentIdentity): AuthorizedSet {
    const selectorsKey = agent.selectors.map((s) => `${s.type}:${s.value}`).join('\n');
    const hit = this.sets.get(agent.spiffeId);
    const same = hit !== undefined && hit.selectorsKey === selectorsKey;
    // A signing call between changes: nothing to look at.
    if (same && hit.generation === this.index.generation) return hit.set;
    // The roots are the node aliases the agent matches: only a change of the server's children can change them.
    const roots = same && !this.serverTouchedSince(hit.generation) ? hit.roots : authorizationRoots(this.index, agent, this.serverId);
    const parts = roots.map((root) => this.subtrees.of(root));
    if (hit !== undefined && sameParts(hit.set.parts, parts)) {
      this.sets.set(agent.spiffeId, { generation: this.index.generation, selectorsKey, roots, set: hit.set });
      return hit.set;
    }
    const set = new AuthorizedSet(parts, hit?.set);
    if (this.sets.size >= MAX_AGENTS && hit === undefined) this.sets.clear();
    this.sets.set(agent.spiffeId, { generation: this.index.generation, selectorsKey, roots, set });
    return set;
  }

  private serverTouchedSince(generation: number): boolean {
    const changes = this.index.touchedSince(generation);
    return changes === undefined || changes.some((parents) => parents.has(this.serverId));
  }

  forget(agentId: string): void {
    this.sets.delete(agentId);
    this.subtrees.forget(agentId);
  }
}

function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}
