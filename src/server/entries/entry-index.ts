import type { RegistrationEntry } from '../datastore/datastore.js';

/**
 * All registration entries in memory, indexed by ID and parent, kept current from the datastore's change feed.
 * Authorization walks and push fan-out read this instead of the database: one query per change, not per agent.
 */
export class EntryIndex {
  private byId = new Map<string, RegistrationEntry>();
  private byParent = new Map<string, Set<string>>();
  revision = 0;

  load(entries: RegistrationEntry[], revision: number): void {
    this.byId.clear();
    this.byParent.clear();
    for (const e of entries) this.put(e);
    this.revision = revision;
  }

  apply(upserts: RegistrationEntry[], deletedIds: string[], revision: number): void {
    for (const id of deletedIds) this.remove(id);
    for (const e of upserts) this.put(e);
    this.revision = Math.max(this.revision, revision);
  }

  get(id: string): RegistrationEntry | undefined {
    return this.byId.get(id);
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
    this.byId.set(e.id, e);
    let set = this.byParent.get(e.parentId);
    if (set === undefined) this.byParent.set(e.parentId, (set = new Set()));
    set.add(e.id);
  }

  private remove(id: string): void {
    const old = this.byId.get(id);
    if (old === undefined) return;
    this.byId.delete(id);
    const set = this.byParent.get(old.parentId);
    set?.delete(id);
    if (set && set.size === 0) this.byParent.delete(old.parentId);
  }
}
