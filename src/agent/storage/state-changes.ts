import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { entryToMessage, type AgentEntry } from '../cache/agent-entry.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';
import type { JournalBatch } from './state-journal.js';
import type { StoredState } from './stored-state.js';
import { bundleDocument, federatedBundleDocs, svidDocument, type OnUnstorableKey } from './state-documents.js';

/*
 * The change set a save appends as one journal batch: what differs between the state and what is on disk. Apart from
 * state-persister.ts, which decides where and when a batch or a snapshot is written, because the comparison is pure:
 * it reads objects and versions, and touches no file.
 */

/** What is on disk (snapshot + journal), by the objects it was saved from: the base the next change set is taken against. */
export interface Persisted {
  revision: number;
  bundle: TrustBundle;
  federated: readonly TrustBundle[];
  readonly entries: Map<string, AgentEntry>;
  /** Entry ID → version (leaf serial) of the SVID on disk; '' when it is on disk but was not restored. */
  readonly svids: Map<string, string>;
}

/**
 * What a withdrawal save reads of the agent's state (StatePersister.saveWithdrawal): the bundles, and for each entry
 * the withdrawal concerns, the entry and SVID held for it now (undefined: gone).
 */
export interface WithdrawnState {
  readonly bundle: TrustBundle;
  readonly federatedBundles: readonly TrustBundle[];
  readonly entries: ReadonlyMap<string, { readonly entry: AgentEntry | undefined; readonly svid: WorkloadSvid | undefined }>;
}

/** What a save of the noted changes reads (StatePersister.saveChanged): a withdrawal's view, and the revision. */
export interface ChangedState extends WithdrawnState {
  readonly revision: number;
}

export function persistedOf(state: StoredState): Persisted {
  return {
    revision: state.revision,
    bundle: state.bundle,
    federated: state.federatedBundles,
    entries: new Map(state.entries.map((e) => [e.id, e])),
    svids: new Map(state.svids.map((s) => [s.entryId, s.version])),
  };
}

/** What differs from the base: the new revision and bundles (changed or not), and the entries and SVIDs that changed. */
interface Found {
  readonly revision: number;
  readonly bundle: TrustBundle;
  readonly federatedBundles: readonly TrustBundle[];
  readonly entries: readonly AgentEntry[];
  readonly removedEntries: readonly string[];
  readonly svids: readonly WorkloadSvid[];
  readonly removedSvids: readonly string[];
}

export interface Changes extends Found {
  readonly batch: JournalBatch;
}

/** The change set from `base` to `state`, or undefined when nothing changed. */
export function changes(base: Persisted, state: StoredState, onUnstorable: OnUnstorableKey): Changes | undefined {
  return changeSet(base, {
    revision: state.revision,
    bundle: state.bundle,
    federatedBundles: state.federatedBundles,
    entries: state.entries.filter((e) => base.entries.get(e.id) !== e),
    removedEntries: gone(base.entries, state.entries.map((e) => e.id)),
    svids: state.svids.filter((s) => base.svids.get(s.entryId) !== s.version),
    removedSvids: gone(base.svids, state.svids.map((s) => s.entryId)),
  }, onUnstorable);
}

/** The change set from `base` to the entries `part` names, its bundles and `revision`, or undefined when nothing changed. */
export function partChanges(base: Persisted, part: WithdrawnState, revision: number, onUnstorable: OnUnstorableKey): Changes | undefined {
  const entries: AgentEntry[] = [];
  const removedEntries: string[] = [];
  const svids: WorkloadSvid[] = [];
  const removedSvids: string[] = [];
  for (const [id, now] of part.entries) {
    if (now.entry === undefined) {
      if (base.entries.has(id)) removedEntries.push(id);
    } else if (base.entries.get(id) !== now.entry) {
      entries.push(now.entry);
    }
    if (now.svid === undefined) {
      if (base.svids.has(id)) removedSvids.push(id);
    } else if (base.svids.get(id) !== now.svid.version) {
      svids.push(now.svid);
    }
  }
  return changeSet(base, { revision, bundle: part.bundle, federatedBundles: part.federatedBundles, entries, removedEntries, svids, removedSvids }, onUnstorable);
}

/** The journal batch for what was found to differ from `base`, or undefined when nothing does. */
function changeSet(base: Persisted, found: Found, onUnstorable: OnUnstorableKey): Changes | undefined {
  const batch: JournalBatch = {};
  let changed = false;
  if (found.revision !== base.revision) {
    batch.revision = found.revision;
    changed = true;
  }
  if (found.bundle !== base.bundle) {
    batch.bundle = bundleDocument(found.bundle, onUnstorable);
    changed = true;
  }
  if (found.federatedBundles.length !== base.federated.length || found.federatedBundles.some((b, i) => b !== base.federated[i])) {
    batch.federated_bundles = federatedBundleDocs(found.federatedBundles, onUnstorable);
    changed = true;
  }
  const { entries, removedEntries, svids, removedSvids } = found;
  if (removedEntries.length > 0) batch.removed_entries = [...removedEntries];
  if (entries.length > 0) batch.entries = entries.map(entryToMessage);
  if (removedSvids.length > 0) batch.removed_svids = [...removedSvids];
  if (svids.length > 0) batch.svids = svids.map(svidDocument);
  changed ||= removedEntries.length + entries.length + removedSvids.length + svids.length > 0;
  return changed ? { ...found, batch } : undefined;
}

/**
 * Whether `diff` removes more of the SVIDs on disk than it leaves there — a ban removes them all. A removed SVID's
 * key is otherwise still in the snapshot or the journal, readable, until the next compaction; so these are compacted
 * at once, which takes the keys off the disk now (a ban is a security action) for the cost of rewriting fewer SVIDs
 * than were removed. A withdrawal of a few among many leaves their keys to the next compaction: rewriting every other
 * SVID (~20 MB at 10,000) on each delete would make deleting entries one at a time quadratic.
 */
export function withdrawsMostKeys(base: Persisted, diff: Changes): boolean {
  const removed = diff.removedSvids.length;
  return removed > 0 && removed > base.svids.size - removed;
}

/** Keys of `before` not among `now`. */
function gone(before: ReadonlyMap<string, unknown>, now: readonly string[]): string[] {
  let kept = 0;
  for (const id of now) if (before.has(id)) kept++;
  if (kept === before.size) return [];
  const present = new Set(now);
  return [...before.keys()].filter((id) => !present.has(id));
}