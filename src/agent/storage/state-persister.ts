import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, stageFile, writeFully } from '../../common/atomic-file.js';
import type { Logger } from '../../common/log.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { entryToMessage, type AgentEntry } from '../cache/agent-entry.js';
import { encodeJournalBatch, journalFileName, journalGeneration, type JournalBatch } from './state-journal.js';
import { bundleDocument, encodeStateChunks, federatedBundleDocs, svidDocument, type RawState, type StoredState } from './stored-state.js';

/** The journal may grow to the snapshot's size (at least this) before the snapshot is rewritten. */
const MIN_COMPACTION_BYTES = 4 * 1024 * 1024;

/** What is on disk (snapshot + journal), by the objects it was saved from: the base the next change set is taken against. */
interface Persisted {
  revision: number;
  bundle: TrustBundle;
  federated: readonly TrustBundle[];
  readonly entries: Map<string, AgentEntry>;
  /** Entry ID → version (leaf serial) of the SVID on disk; '' when it is on disk but was not restored. */
  readonly svids: Map<string, string>;
}

/**
 * Saves the agent state incrementally (agent-store.ts has the file layout and the crash-safety argument). Each save
 * compares the state with what is on disk — by object identity for entries and bundles (the cache replaces an object
 * whenever it changes), by version for SVIDs — and appends one fsynced journal batch with the difference. The
 * snapshot is rewritten (in chunks, never as one ~20 MB string) only when there is none or the journal has grown
 * past the snapshot's size, so the cost of saving stays proportional to what changed, amortised.
 */
export class StatePersister {
  private readonly dir: string;
  private base: Persisted | undefined;
  private generation = 0;
  private fd: number | undefined;
  private journalBytes = 0;
  private snapshotBytes = 0;

  constructor(
    private readonly snapshotFile: string,
    private readonly log: Logger,
  ) {
    this.dir = path.dirname(snapshotFile);
  }

  /** Continues what loadState found: `raw` as on disk (snapshot + journal), `state` what was restored from it. */
  resume(raw: RawState, state: StoredState, snapshotBytes: number, journalBytes: number): void {
    this.closeJournal();
    this.generation = raw.journal;
    this.snapshotBytes = snapshotBytes;
    this.journalBytes = journalBytes;
    const restored = new Map(state.svids.map((s) => [s.entryId, s.version]));
    this.base = {
      revision: raw.revision,
      bundle: state.bundle,
      federated: state.federatedBundles,
      entries: new Map(state.entries.map((e) => [e.id, e])),
      svids: new Map([...raw.svids.keys()].map((id) => [id, restored.get(id) ?? ''])),
    };
    const file = this.journalFile();
    // A torn last batch is cut off, so the next batch follows valid ones.
    if (fs.existsSync(file) && fs.statSync(file).size !== journalBytes) fs.truncateSync(file, journalBytes);
  }

  save(state: StoredState): void {
    const base = this.base;
    if (base === undefined) {
      this.compact(state);
      return;
    }
    const diff = changes(base, state);
    if (diff === undefined) return;
    const line = encodeJournalBatch(diff.batch);
    const bytes = Buffer.byteLength(line);
    if (this.journalBytes + bytes > Math.max(MIN_COMPACTION_BYTES, this.snapshotBytes)) {
      this.compact(state);
      return;
    }
    this.append(line);
    this.journalBytes += bytes;
    // The base follows in place: rebuilding maps of 10,000 items on every save would be garbage for nothing.
    base.revision = state.revision;
    base.bundle = state.bundle;
    base.federated = state.federatedBundles;
    for (const id of diff.removedEntries) base.entries.delete(id);
    for (const e of diff.entries) base.entries.set(e.id, e);
    for (const id of diff.removedSvids) base.svids.delete(id);
    for (const s of diff.svids) base.svids.set(s.entryId, s.version);
  }

  close(): void {
    this.closeJournal();
  }

  private journalFile(generation = this.generation): string {
    return path.join(this.dir, journalFileName(generation));
  }

  private append(line: string): void {
    if (this.fd === undefined) {
      const file = this.journalFile();
      const created = !fs.existsSync(file);
      this.fd = fs.openSync(file, 'a', 0o600);
      // The new name must be durable too, or a power cut could lose the journal with the batches it holds.
      if (created) fsyncDir(this.dir);
    }
    try {
      writeFully(this.fd, line);
      fs.fsyncSync(this.fd);
    } catch (err) {
      // A partial batch must not stay in front of later ones: cut it off, or start over with a snapshot.
      try {
        fs.ftruncateSync(this.fd, this.journalBytes);
      } catch {
        this.base = undefined;
      }
      throw err;
    }
  }

  /** Writes a full snapshot that starts a new, empty journal, then removes the old journals. */
  private compact(state: StoredState): void {
    let next = this.generation;
    for (const name of fs.readdirSync(this.dir)) next = Math.max(next, journalGeneration(name) ?? 0);
    next += 1;
    let written = 0;
    const tmp = stageFile(this.snapshotFile, 0o600, (fd) => {
      for (const chunk of encodeStateChunks(state, next)) written += writeFully(fd, chunk);
    });
    try {
      fs.chmodSync(tmp, 0o600);
      fs.renameSync(tmp, this.snapshotFile);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fsyncDir(this.dir);
    this.closeJournal();
    this.generation = next;
    this.journalBytes = 0;
    this.snapshotBytes = written;
    this.base = persistedOf(state);
    for (const name of fs.readdirSync(this.dir)) {
      const generation = journalGeneration(name);
      if (generation !== undefined && generation !== next) fs.rmSync(path.join(this.dir, name), { force: true });
    }
    this.log.debug({ bytes: written, entries: state.entries.length, svids: state.svids.length }, 'agent state snapshot written');
  }

  private closeJournal(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

function persistedOf(state: StoredState): Persisted {
  return {
    revision: state.revision,
    bundle: state.bundle,
    federated: state.federatedBundles,
    entries: new Map(state.entries.map((e) => [e.id, e])),
    svids: new Map(state.svids.map((s) => [s.entryId, s.version])),
  };
}

interface Changes {
  readonly batch: JournalBatch;
  readonly entries: readonly AgentEntry[];
  readonly removedEntries: readonly string[];
  readonly svids: StoredState['svids'];
  readonly removedSvids: readonly string[];
}

/** The change set from `base` to `state`, or undefined when nothing changed. */
function changes(base: Persisted, state: StoredState): Changes | undefined {
  const batch: JournalBatch = {};
  let changed = false;
  if (state.revision !== base.revision) {
    batch.revision = state.revision;
    changed = true;
  }
  if (state.bundle !== base.bundle) {
    batch.bundle = bundleDocument(state.bundle);
    changed = true;
  }
  if (state.federatedBundles.length !== base.federated.length || state.federatedBundles.some((b, i) => b !== base.federated[i])) {
    batch.federated_bundles = federatedBundleDocs(state.federatedBundles);
    changed = true;
  }
  const entries = state.entries.filter((e) => base.entries.get(e.id) !== e);
  const removedEntries = gone(base.entries, state.entries.map((e) => e.id));
  const svids = state.svids.filter((s) => base.svids.get(s.entryId) !== s.version);
  const removedSvids = gone(base.svids, state.svids.map((s) => s.entryId));
  if (removedEntries.length > 0) batch.removed_entries = removedEntries;
  if (entries.length > 0) batch.entries = entries.map(entryToMessage);
  if (removedSvids.length > 0) batch.removed_svids = removedSvids;
  if (svids.length > 0) batch.svids = svids.map(svidDocument);
  changed ||= removedEntries.length + entries.length + removedSvids.length + svids.length > 0;
  return changed ? { batch, entries, removedEntries, svids, removedSvids } : undefined;
}

/** Keys of `before` not among `now`. */
function gone(before: ReadonlyMap<string, unknown>, now: readonly string[]): string[] {
  let kept = 0;
  for (const id of now) if (before.has(id)) kept++;
  if (kept === before.size) return [];
  const present = new Set(now);
  return [...before.keys()].filter((id) => !present.has(id));
}
