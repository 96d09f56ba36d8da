import type { RegistrationEntry } from '../datastore/datastore.js';
import { entriesUnder } from './authorized-entries.js';
import type { EntryIndex } from './entry-index.js';

/** Far above the roots (agents' own IDs, node aliases) one server holds streams for; only a bound. */
const MAX_SUBTREES = 100_000;

/**
 * The entries under one root (an agent's own SPIFFE ID, or a node alias's), transitively, as of `generation`. Never
 * modified once built: a changed subtree is a new one, which names the one it replaced (`previous`) and the IDs whose
 * presence or revision differ between the two (`changed`), so a holder of the previous one learns what changed
 * without comparing every entry.
 */
export interface Subtree {
  readonly root: string;
  generation: number;
  readonly entries: ReadonlyMap<string, RegistrationEntry>;
  previous: Subtree | undefined;
  changed: readonly string[] | undefined;
}

/**
 * Each root's subtree, computed at most once per index generation and shared by every agent whose roots include it:
 * in the usual layout all of a cluster's agents match one node alias that holds nearly every entry, and an entry
 * change under it walked and compared that alias's entries once per agent (300 agents x 2,004 entries: 563 ms of CPU
 * per change); now once.
 */
export class Subtrees {
  private readonly trees = new Map<string, Subtree>();

  constructor(private readonly index: EntryIndex) {}

  get size(): number {
    return this.trees.size;
  }

  of(root: string): Subtree {
    const hit = this.trees.get(root);
    if (hit !== undefined) {
      if (hit.generation === this.index.generation) return hit;
      if (this.unchangedSince(hit)) {
        hit.generation = this.index.generation;
        return hit;
      }
    }
    const entries = entriesUnder(this.index, [root]);
    // Walked again for nothing (say, many parents touched, the walk being cheaper than looking them all up): the same
    // subtree, so that the sets holding it stay the same too.
    if (hit !== undefined && sameEntries(hit.entries, entries)) {
      hit.generation = this.index.generation;
      return hit;
    }
    const tree: Subtree = { root, generation: this.index.generation, entries, previous: undefined, changed: undefined };
    if (hit !== undefined) {
      tree.previous = hit;
      tree.changed = changedIds(hit.entries, entries);
      // One step back only: a chain of every version would hold every old map.
      hit.previous = undefined;
      hit.changed = undefined;
    }
    if (this.trees.size >= MAX_SUBTREES && hit === undefined) this.trees.clear();
    this.trees.set(root, tree);
    return tree;
  }

  forget(root: string): void {
    this.trees.delete(root);
  }

  /**
   * Whether no change since the subtree was computed touched a parent it reached: the first changed entry on any path
   * into or out of it hangs from the root or from an unchanged entry of it, so the touched parents are enough.
   */
  private unchangedSince(tree: Subtree): boolean {
    const changes = this.index.touchedSince(tree.generation);
    if (changes === undefined) return false;
    let touched = 0;
    for (const parents of changes) touched += parents.size;
    // Looking up more parents than the subtree holds entries would cost more than walking it again.
    if (touched > tree.entries.size + 1) return false;
    for (const parents of changes) {
      for (const parent of parents) {
        if (parent === tree.root) return false;
        for (const id of this.index.idsWithSpiffeId(parent) ?? []) if (tree.entries.has(id)) return false;
      }
    }
    return true;
  }
}

function sameEntries(a: ReadonlyMap<string, RegistrationEntry>, b: ReadonlyMap<string, RegistrationEntry>): boolean {
  if (a.size !== b.size) return false;
  for (const [id, e] of b) if (a.get(id) !== e) return false;
  return true;
}

/** The IDs present in one map and not the other, or in both with different revisions. */
function changedIds(before: ReadonlyMap<string, RegistrationEntry>, after: ReadonlyMap<string, RegistrationEntry>): string[] {
  const changed: string[] = [];
  for (const [id, e] of after) if (before.get(id)?.revision !== e.revision) changed.push(id);
  for (const id of before.keys()) if (!after.has(id)) changed.push(id);
  return changed;
}
