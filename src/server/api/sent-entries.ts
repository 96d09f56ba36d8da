import type { RegistrationEntry } from '../datastore/datastore.js';
import { AuthorizedSet } from '../entries/authorized-set.js';

/** The part of a Sync request that says what the agent already holds. */
export interface KnownEntries {
  known?: Array<{ id?: string; revision?: number }> | undefined;
}

/**
 * What one Sync stream's agent holds: each entry ID with the revision it was sent. After the first update that is
 * exactly the agent's authorized set as last pushed, so the stream keeps that set (shared with AuthorizedSets, never
 * modified: a changed set is a new map) rather than a copy of its IDs and revisions, and lets the request's known
 * list go once read: held by grpc-js for the stream's life, it would cost up to 4 MB per stream (measured: ~3 KB of
 * each idle agent's 24-entry stream; bench/HISTORY.md, S).
 */
export class SentEntries {
  private held: ReadonlyMap<string, { readonly revision: number }>;

  /** Takes the known list out of `request`. */
  constructor(request: KnownEntries) {
    const known = new Map<string, { revision: number }>();
    for (const k of request.known ?? []) if (k.id) known.set(k.id, { revision: Number(k.revision ?? 0) });
    request.known = undefined;
    this.held = known;
  }

  /** What to send for the agent to hold `entries` (upserts, removed IDs); from then on it is taken to hold them. */
  update(entries: ReadonlyMap<string, RegistrationEntry>): { upserts: RegistrationEntry[]; removed: string[] } {
    // AuthorizedSets keeps an agent's map through changes that cannot alter it: nothing to compare, entry by entry.
    if (entries === this.held) return { upserts: [], removed: [] };
    // A set that follows the one held names the IDs that may differ: the rest are the same in both.
    const changed = entries instanceof AuthorizedSet ? entries.changedSince(this.held) : undefined;
    if (changed !== undefined) return this.updateOnly(entries, changed);
    const upserts: RegistrationEntry[] = [];
    for (const [id, e] of entries) if (this.held.get(id)?.revision !== e.revision) upserts.push(e);
    const removed: string[] = [];
    for (const id of this.held.keys()) if (!entries.has(id)) removed.push(id);
    this.held = entries;
    return { upserts, removed };
  }

  /** update(), comparing only the IDs `changed`: the same answer when the sets agree on every other ID. */
  private updateOnly(entries: ReadonlyMap<string, RegistrationEntry>, changed: readonly string[]): { upserts: RegistrationEntry[]; removed: string[] } {
    const upserts: RegistrationEntry[] = [];
    const removed: string[] = [];
    for (const id of changed) {
      const e = entries.get(id);
      const had = this.held.get(id);
      if (e !== undefined && had?.revision !== e.revision) upserts.push(e);
      else if (e === undefined && had !== undefined) removed.push(id);
    }
    this.held = entries;
    return { upserts, removed };
  }
}
