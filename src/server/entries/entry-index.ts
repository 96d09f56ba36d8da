import type { RegistrationEntry } from '../datastore/datastore.js';

/**
 * How many applied changes the index remembers the touched parents of (touchedSince). An agent's authorized set is
 * brought up to date at every change while its Sync stream reads, so it rarely lags by more than one or two.
 */
const TOUCHED_LOG_LENGTH = 64;

/**
 * All registration entries in memory, indexed by ID, parent and SPIFFE ID, kept current from the datastore's change
 * feed. Authorization walks and push fan-out read this instead of the database: one query per change, not per agent.
 */
export class EntryIndex {
  private byId = new Map<string, RegistrationEntry>();
  private byParent = new Map<string, Set<string>>();
  /**
   * Nearly every SPIFFE ID names one entry: it is held as that entry's ID, and as a set only once a second entry has
   * it. A set for each of 100,000 entries was most of what loading them cost.
   */
  private bySpiffeId = new Map<string, string | Set<string>>();
  revision = 0;
  /** Counts every load and apply: a set computed at one generation is current while the generation is unchanged. */
  generation = 0;
  /** The parent IDs each apply touched (before and after), by the generation it produced; a load clears it. */
  private touched: Array<{ generation: number; parents: ReadonlySet<string> }> = [];

  load(entries: RegistrationEntry[], revision: number): void {
    this.byId.clear();
    this.byParent.clear();
    this.bySpiffeId.clear();
    // Into empty maps there is nothing to take out before each insert, as put() does; an ID listed twice (never, from
    // the datastore) keeps its last copy, as put() leaves it.
    for (const e of entries) {
      if (this.byId.has(e.id)) this.put(e);
      else this.insert(e);
    }
    this.revision = revision;
    this.generation++;
    this.touched = [];
  }

  apply(upserts: RegistrationEntry[], deletedIds: string[], revision: number): void {
    const parents = new Set<string>();
    for (const id of deletedIds) {
      const old = this.byId.get(id);
      if (old !== undefined) parents.add(old.parentId);
      this.remove(id);
    }
    for (const e of upserts) {
      const old = this.byId.get(e.id);
      if (old !== undefined) parents.add(old.parentId);
      parents.add(e.parentId);
      this.put(e);
    }
    this.revision = Math.max(this.revision, revision);
    this.generation++;
    this.touched.push({ generation: this.generation, parents });
    if (this.touched.length > TOUCHED_LOG_LENGTH) this.touched.shift();
  }

  /**
   * Every parent ID an entry had or got in the changes after `generation`: an authorized set that reached none of
   * them is unchanged by those changes. Undefined when that is no longer known (a load since, or too long ago).
   */
  touchedSince(generation: number): ReadonlySet<string>[] | undefined {
    if (generation === this.generation) return [];
    const first = this.touched.findIndex((t) => t.generation === generation + 1);
    if (first === -1) return undefined;
    return this.touched.slice(first).map((t) => t.parents);
  }

  get(id: string): RegistrationEntry | undefined {
    return this.byId.get(id);
  }

  /** IDs of the entries whose SPIFFE ID is `spiffeId` (usually one). */
  idsWithSpiffeId(spiffeId: string): Iterable<string> | undefined {
    const ids = this.bySpiffeId.get(spiffeId);
    return typeof ids === 'string' ? [ids] : ids;
  }

  childrenOf(parentId: string): RegistrationEntry[] {
    const ids = this.byParent.get(parentId);
    if (ids === undefined) return [];
    return [...ids].map((id) => this.byId.get(id)!);
  }

  get size(): number {
    return this.byId.size;
  }

  entries(): IterableIterator<RegistrationEntry> {
    return this.byId.values();
  }

  private put(e: RegistrationEntry): void {
    this.remove(e.id);
    this.insert(e);
  }

  /** Adds an entry whose ID the index does not hold. */
  private insert(e: RegistrationEntry): void {
    this.byId.set(e.id, e);
    add(this.byParent, e.parentId, e.id);
    const same = this.bySpiffeId.get(e.spiffeId);
    if (same === undefined) this.bySpiffeId.set(e.spiffeId, e.id);
    else if (typeof same === 'string') this.bySpiffeId.set(e.spiffeId, new Set([same, e.id]));
    else same.add(e.id);
  }

  private remove(id: string): void {
    const old = this.byId.get(id);
    if (old === undefined) return;
    this.byId.delete(id);
    drop(this.byParent, old.parentId, id);
    const same = this.bySpiffeId.get(old.spiffeId);
    if (same === id) this.bySpiffeId.delete(old.spiffeId);
    else if (typeof same !== 'string' && same !== undefined) {
      same.delete(id);
      // Back to the single-ID form once one entry is left.
      if (same.size === 1) this.bySpiffeId.set(old.spiffeId, same.values().next().value as string);
    }
  }
}

function add(map: Map<string, Set<string>>, key: string, id: string): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(id);
}

function drop(map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key);
  set?.delete(id);
  if (set && set.size === 0) map.delete(key);
}
