import type { Logger } from '../../common/log.js';

/**
 * What the operator is told when an agent leaves (`agent evict`, `agent ban`, or pruned once its SVID expired) while
 * registration entries are parented directly to its ID. A join-token agent's ID is random per attestation, so a host
 * that attests again (its data dir lost, or evicted) comes back under another ID that those entries do not match, and
 * nothing else says so: its workloads just get no SVIDs. SPIRE behaves the same (its `agent evict` and `agent purge`
 * leave entries alone) and recommends node aliases for join-token hosts; meshid at least names the count and the fix.
 */
export type AgentDeparture = 'evicted' | 'banned' | 'pruned';

export function orphanedEntriesNotice(agentId: string, count: number, departure: AgentDeparture): string {
  const one = count === 1;
  const entries = `${count} registration ${one ? 'entry is' : 'entries are'} parented directly to ${agentId}`;
  const match = one ? 'matches' : 'match';
  const why: Record<AgentDeparture, string> = {
    evicted: `and ${match} no agent from now on: the host attests again with a new join token, under a new agent ID`,
    banned: `and no agent gets ${one ? 'it' : 'them'} while the agent is banned: a host that attests again does so under a new agent ID`,
    pruned:
      `and ${match} no agent now that the agent was removed (its SVID expired: a host whose agent lost its data dir attests again under a new agent ID)`,
  };
  return (
    `${entries}, ${why[departure]}. Move them to the new agent with meshid-server entry update --entry-id <entry ID> --parent-id <new agent ID> ` +
    `(meshid-server entry show --parent-id ${agentId} lists them), or parent them to a node alias ` +
    '(meshid-server entry create --node --selector ...), which follows a host across attestations'
  );
}

/** What the prune's warning needs of the datastore. */
export interface ParentedEntries {
  listEntriesByParentIds(parentIds: readonly string[]): Promise<ReadonlyArray<{ parentId: string }>>;
}

/** Agents named one by one in the prune's warnings; a prune after a long outage may take thousands. */
const NAMED_AGENTS = 20;

/** After the housekeeping prune: a warning for each pruned agent that entries are still parented to. */
export async function warnOfEntriesOrphanedByPrune(pruned: readonly string[], entries: ParentedEntries, log: Logger): Promise<void> {
  if (pruned.length === 0) return;
  const counts = new Map<string, number>();
  for (const e of await entries.listEntriesByParentIds(pruned)) counts.set(e.parentId, (counts.get(e.parentId) ?? 0) + 1);
  const orphaning = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [agent, count] of orphaning.slice(0, NAMED_AGENTS)) log.warn({ agent, entries: count }, orphanedEntriesNotice(agent, count, 'pruned'));
  const rest = orphaning.slice(NAMED_AGENTS);
  if (rest.length > 0) {
    const total = rest.reduce((n, [, c]) => n + c, 0);
    log.warn({ agents: rest.length, entries: total }, `${rest.length} more pruned agents have ${total} registration entries parented directly to them: find them with meshid-server entry show --parent-id <agent ID>`);
  }
}
