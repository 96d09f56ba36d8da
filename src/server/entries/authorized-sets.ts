import { authorizationRoots, type AgentIdentity } from './authorized-entries.js';
import { AuthorizedSet } from './authorized-set.js';
import type { EntryIndex } from './entry-index.js';
import { Subtrees } from './subtrees.js';

/** Far above the agents one server holds streams for; a bound only against agents that sign without ever syncing. */
const MAX_AGENTS = 50_000;

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
  private readonly sets = new Map<string, AuthorizedSet>();
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
    const hit = this.sets.get(agent.spiffeId);
    // Selectors are read at every call (an agent's may have changed without a change of entries): only roots and
    // subtrees decide whether the set held is current.
    const roots = authorizationRoots(this.index, agent, this.serverId);
    const parts = roots.map((root) => this.subtrees.of(root));
    if (hit !== undefined && sameParts(hit.parts, parts)) return hit;
    const set = new AuthorizedSet(parts, hit);
    if (this.sets.size >= MAX_AGENTS && hit === undefined) this.sets.clear();
    this.sets.set(agent.spiffeId, set);
    return set;
  }

  forget(agentId: string): void {
    this.sets.delete(agentId);
    this.subtrees.forget(agentId);
  }
}

function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}
