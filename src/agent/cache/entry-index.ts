import { formatSelector, type Selector } from '../../common/spiffe/selector.js';
import { compareEntryAge, selectorKeys, type AgentEntry } from './agent-entry.js';

/**
 * A workload's selectors as the set of "type:value" keys matching works on. Kept per array when the array is frozen
 * (the attestor hands every call of a known caller the same frozen array), so it is built once per caller, not per
 * call.
 */
export function selectorSet(selectors: readonly Selector[]): ReadonlySet<string> {
  let set = selectorSets.get(selectors);
  if (set === undefined) {
    set = new Set(selectors.map(formatSelector));
    if (Object.isFrozen(selectors)) selectorSets.set(selectors, set);
  }
  return set;
}
const selectorSets = new WeakMap<readonly Selector[], ReadonlySet<string>>();

/**
 * The selectors as one string, equal for equal sets whatever their order and different for different sets: a name
 * for "this workload" in memos, so a collision would hand one workload another's state. Hence JSON and not a
 * separator: selector values come from the caller's process and may hold any character (a newline in an executable's
 * path could otherwise spell out another workload's selectors). Streams keep their selector array for life, so the
 * key is built once per array.
 */
export function workloadKey(selectors: readonly Selector[]): string {
  let key = workloadKeys.get(selectors);
  if (key === undefined) workloadKeys.set(selectors, (key = JSON.stringify([...selectorSet(selectors)].sort())));
  return key;
}
const workloadKeys = new WeakMap<readonly Selector[], string>();

/**
 * Whether a workload with these selectors gets this entry's identity: every selector of the entry must be among the
 * workload's (the workload may have more). An entry without selectors matches nobody.
 */
export function entryMatches(entry: AgentEntry, workload: ReadonlySet<string>): boolean {
  if (entry.selectors.length === 0) return false;
  for (const s of entry.selectors) if (!workload.has(formatSelector(s))) return false;
  return true;
}

/**
 * The agent's entries, indexed by selector so a workload's candidates are found without scanning every entry: only
 * entries sharing at least one selector with the workload can match, and those are then checked in full.
 */
export class EntryIndex {
  private readonly entries = new Map<string, AgentEntry>();
  private readonly bySelector = new Map<string, Set<string>>();

  get size(): number {
    return this.entries.size;
  }

  get(id: string): AgentEntry | undefined {
    return this.entries.get(id);
  }

  values(): IterableIterator<AgentEntry> {
    return this.entries.values();
  }

  /** Adds or replaces an entry; returns the one it replaced. */
  upsert(entry: AgentEntry): AgentEntry | undefined {
    const previous = this.remove(entry.id);
    this.entries.set(entry.id, entry);
    for (const key of selectorKeys(entry.selectors)) {
      let ids = this.bySelector.get(key);
      if (ids === undefined) this.bySelector.set(key, (ids = new Set()));
      ids.add(entry.id);
    }
    return previous;
  }

  remove(id: string): AgentEntry | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    this.entries.delete(id);
    for (const key of selectorKeys(entry.selectors)) {
      const ids = this.bySelector.get(key);
      ids?.delete(id);
      if (ids?.size === 0) this.bySelector.delete(key);
    }
    return entry;
  }

  /** Entries matching the workload, oldest first (svids[0] is the default identity, WL-API §8). */
  matching(workload: ReadonlySet<string>): AgentEntry[] {
    const seen = new Set<string>();
    const out: AgentEntry[] = [];
    for (const key of workload) {
      for (const id of this.bySelector.get(key) ?? []) {
        if (seen.has(id)) continue;
        seen.add(id);
        const entry = this.entries.get(id)!;
        if (entryMatches(entry, workload)) out.push(entry);
      }
    }
    return out.sort(compareEntryAge);
  }
}
