import type { Selector } from '../../common/spiffe/selector.js';
import { fileKey, type FileIdentity } from './proc-hooks.js';
import type { ProcStatus } from './proc-status.js';

/**
 * Everything the unix selectors are computed from: the ids and supplementary groups (/proc/<pid>/status), the
 * executable's path and file version (/proc/<pid>/exe; the sha256 selector is a function of the version), and which
 * reading of /etc/passwd and /etc/group named them.
 */
export interface AttestationInputs {
  readonly status: ProcStatus;
  /** Undefined when the path is not valid UTF-8 (no path selector). */
  readonly exe: string | undefined;
  readonly exeFile: FileIdentity;
  readonly accountsGeneration: number;
}

export const DEFAULT_MEMO_ENTRIES = 1024;

/**
 * Selectors already computed, keyed by the complete inputs they were computed from (a bounded LRU). It never says who
 * a caller is: the attestor reads the caller's inputs afresh on every call, between two checks of the caller's pidfd,
 * and only the step from inputs to selectors (opening and pinning /proc/<pid>, hashing, name lookups, building the
 * list) is skipped when the same inputs were seen before. Equal inputs give equal selectors whichever process they
 * came from, so a recycled pid, an exec(), a setuid()/setgroups() or an edited /etc/group changes the key and misses.
 */
export class AttestationMemo {
  private readonly entries = new Map<string, readonly Selector[]>();

  constructor(private readonly maxEntries: number = DEFAULT_MEMO_ENTRIES) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new Error(`maxEntries must be a whole number ≥ 1, got ${maxEntries}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The selectors for these inputs, if known; frozen, shared between callers. */
  get(inputs: AttestationInputs): readonly Selector[] | undefined {
    const key = memoKey(inputs);
    const hit = this.entries.get(key);
    if (hit === undefined) return undefined;
    // Refresh its place so the least recently used entry is the one dropped.
    this.entries.delete(key);
    this.entries.set(key, hit);
    return hit;
  }

  /** Remembers `selectors` for `inputs` and returns the frozen copy that is kept. */
  set(inputs: AttestationInputs, selectors: readonly Selector[]): readonly Selector[] {
    const kept = Object.freeze(selectors.map((s) => Object.freeze({ type: s.type, value: s.value })));
    const key = memoKey(inputs);
    this.entries.delete(key);
    this.entries.set(key, kept);
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return kept;
  }
}

/**
 * NUL separates the parts: it cannot occur in a path, and ids and file keys are digits and separators. A path that
 * is not UTF-8 is a lone NUL, which no path can be.
 */
function memoKey(i: AttestationInputs): string {
  const s = i.status;
  return `${s.realUid}:${s.effectiveUid}:${s.realGid}:${s.effectiveGid}:${s.groups.join(',')}\0${i.exe ?? '\0'}\0${fileKey(i.exeFile)}\0${i.accountsGeneration}`;
}
