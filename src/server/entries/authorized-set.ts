import type { RegistrationEntry } from '../datastore/datastore.js';
import type { Subtree } from './subtrees.js';

/**
 * One agent's authorized entries: the union of its roots' subtrees, read through rather than copied, since the
 * subtrees are shared between agents (a copy per agent at every change would cost entries x agents again). Never
 * modified: a changed set is a new one, which names the set it follows (`follows`) and, when every subtree that
 * differs between the two knows its own changes, the IDs that may differ (changedSince), so a Sync stream holding
 * the previous set compares those alone.
 */
export class AuthorizedSet implements ReadonlyMap<string, RegistrationEntry> {
  /** The subtrees with entries: a lookup reads these. */
  private readonly filled: readonly ReadonlyMap<string, RegistrationEntry>[];
  private follows: AuthorizedSet | undefined;
  private changed: string[] | undefined;
  private count: number | undefined;

  /** `parts`: one subtree per root, in the order of `previous`'s when it had the same roots. */
  constructor(
    readonly parts: readonly Subtree[],
    previous?: AuthorizedSet,
  ) {
    this.filled = parts.filter((p) => p.entries.size > 0).map((p) => p.entries);
    if (previous === undefined || previous.parts.length !== parts.length) return;
    const changed = new Set<string>();
    for (let i = 0; i < parts.length; i++) {
      const now = parts[i]!;
      const before = previous.parts[i]!;
      if (now === before) continue;
      // Another root, or a subtree more than one change past the one held: nothing short of a full compare is sure.
      if (now.root !== before.root || now.previous !== before || now.changed === undefined) return;
      for (const id of now.changed) changed.add(id);
    }
    this.follows = previous;
    this.changed = [...changed];
    // One step back only: a chain of every set would hold every old subtree.
    previous.follows = undefined;
    previous.changed = undefined;
  }

  /**
   * The IDs whose presence or revision may differ from `held`, or undefined when that is not known (then compare all).
   * Outside these IDs each root's subtree holds the same entries in both, so the unions do too.
   */
  changedSince(held: ReadonlyMap<string, unknown>): readonly string[] | undefined {
    return held === this.follows ? this.changed : undefined;
  }

  get(id: string): RegistrationEntry | undefined {
    for (const m of this.filled) {
      const e = m.get(id);
      if (e !== undefined) return e;
    }
    return undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  get size(): number {
    if (this.count === undefined) {
      let n = 0;
      for (const _ of this.keys()) n++;
      this.count = n;
    }
    return this.count;
  }

  *entries(): IterableIterator<[string, RegistrationEntry]> {
    if (this.filled.length === 1) {
      yield* this.filled[0]!.entries();
      return;
    }
    // A subtree can reach an entry another one holds too (its SPIFFE ID reused below both): each once.
    const seen = new Set<string>();
    for (const m of this.filled) {
      for (const [id, e] of m) {
        if (seen.has(id)) continue;
        seen.add(id);
        yield [id, e];
      }
    }
  }

  *keys(): IterableIterator<string> {
    for (const [id] of this.entries()) yield id;
  }

  *values(): IterableIterator<RegistrationEntry> {
    for (const [, e] of this.entries()) yield e;
  }

  [Symbol.iterator](): IterableIterator<[string, RegistrationEntry]> {
    return this.entries();
  }

  forEach(fn: (value: RegistrationEntry, key: string, map: ReadonlyMap<string, RegistrationEntry>) => void): void {
    for (const [id, e] of this.entries()) fn(e, id, this);
  }
}
