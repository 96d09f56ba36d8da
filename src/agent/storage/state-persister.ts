import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, stageFile, writeFully } from '../../common/atomic-file.js';
import type { Logger } from '../../common/log.js';
import { encodeJournalBatch, journalFileName, journalGeneration } from './state-journal.js';
import { encodeStateChunks, type RawState, type StoredState } from './stored-state.js';
import type { OnUnstorableKey } from './state-documents.js';
import { changes, partChanges, persistedOf, withdrawsMostKeys, type ChangedState, type Changes, type Persisted, type WithdrawnState } from './state-changes.js';
import { stageSnapshot, StagingCancelled } from './snapshot-staging.js';
import { UnstorableKeyLog } from './unstorable-key-log.js';

/** The journal may grow to the snapshot's size (at least this) before the snapshot is rewritten (compaction). */
const MIN_COMPACTION_BYTES = 4 * 1024 * 1024;

/**
 * A compaction under way (StatePersister.startCompaction): the snapshot of generation `generation` being written off
 * the event loop, and its journal, which takes every batch appended meanwhile as the current journal does.
 */
interface Compaction {
  readonly generation: number;
  /**
   * The first snapshot (none on disk to append to: writeFirstSnapshot). Batches saved meanwhile go to its journal
   * alone and are pending, not saved, until it is renamed in: before that a kill leaves no state, as before any save.
   */
  readonly first: boolean;
  /** What the snapshot holds: close() writes it at once when the agent stops before it is in place. */
  readonly state: StoredState;
  readonly fd: number;
  /** Bytes of whole batches in the new journal. */
  bytes: number;
  /** Set when the compaction is given up (a snapshot written at once, a failure, close): it then renames nothing. */
  cancelled: boolean;
  /** Settles when the compaction ended, whether it took effect or not; never rejects. */
  done: Promise<void>;
}

/**
 * Saves the agent state incrementally (agent-store.ts has the file layout and the crash-safety argument). Each save
 * compares the state with what is on disk — by object identity for entries and bundles (the cache replaces an object
 * whenever it changes), by version for SVIDs; the agent's saves only the entries the cache named changed
 * (saveChanged) — and appends one fsynced journal batch with the difference. Once the journal has grown past the
 * snapshot's size, the snapshot is rewritten off the event loop while saves go on (startCompaction), so the cost of
 * a save on the event loop stays proportional to what changed. The agent's first snapshot (no state.json on disk) is
 * written off the event loop too, its saves pending until it is in place (writeFirstSnapshot). A snapshot is written at
 * once, on the event loop, when the one on disk cannot be appended to, for save() of a whole state, and to take a
 * ban's keys off the disk (compact).
 */
export class StatePersister {
  private readonly dir: string;
  private base: Persisted | undefined;
  private generation = 0;
  private fd: number | undefined;
  private journalBytes = 0;
  private snapshotBytes = 0;
  /**
   * A journal file was created and the directory fsync that makes its name durable has not succeeded yet: every
   * append tries it again before writing, so a batch is never reported saved in a file a power cut could unname.
   */
  private journalNameUnsynced = false;
  /** Logs a bundle key left out of the state (writableBundle) once, not at every save. */
  private readonly reportUnstorable: OnUnstorableKey;
  private compaction: Compaction | undefined;
  /** The last compaction's end, given up or not: a given-up one still removes its temp file. */
  private compactionEnded: Promise<void> = Promise.resolve();
  /** Journal size past which a compaction starts; raised after one fails, so that a failing disk is not retried at every save. */
  private compactAtBytes: number | undefined;
  /** A first snapshot written off the event loop failed: the next ones are written at once (compact), failing loudly. */
  private firstSnapshotFailed = false;
  /** Journals of replaced generations are left on disk, their removal refused (removeOldJournals): every save retries. */
  private oldJournalsLeft = false;
  /** Entries whose entry or SVID changed since the last save that took every change (noteChanged, saveChanged). */
  private readonly noted = new Set<string>();

  constructor(
    private readonly snapshotFile: string,
    private readonly log: Logger,
  ) {
    this.dir = path.dirname(snapshotFile);
    this.reportUnstorable = new UnstorableKeyLog(log).report;
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
    // An SVID on disk that was not restored (expired, its entry gone) is removed by the next save, as a comparison of
    // the whole state would find.
    for (const id of raw.svids.keys()) if (!restored.has(id)) this.noted.add(id);
    const file = this.journalFile();
    // A torn last batch is cut off, so the next batch follows valid ones.
    if (fs.existsSync(file) && fs.statSync(file).size !== journalBytes) fs.truncateSync(file, journalBytes);
  }

  /**
   * Saves `state` by comparing every entry and SVID with what is on disk; saved when it returns. A first snapshot still
   * being written off the event loop is given up for one of `state` written at once (it holds every change).
   */
  save(state: StoredState): void {
    if (this.pending()) this.cancelCompaction();
    const base = this.base;
    if (base === undefined) this.compact(state);
    else this.appendChanges(base, changes(base, state, this.reportUnstorable), () => state, true);
    this.noted.clear();
  }

  /** Notes entries whose entry or SVID changed (the cache names them), for the next saveChanged. */
  noteChanged(entryIds: Iterable<string>): void {
    for (const id of entryIds) this.noted.add(id);
  }

  /**
   * Saves what changed since the last save, as save() does, but reads only the entries noted changed (noteChanged)
   * through `read`, which gets their IDs: the cost is the change's, where save() compares every entry and SVID (~4 ms
   * of CPU with 10,000 of them on an idle core, at every save, even one that finds nothing). `full` is read when a
   * snapshot must be written instead. `read` answering undefined (nothing to save from yet) saves nothing and keeps
   * the notes, as a save that fails does. Returns true when saved, false when pending: the first snapshot is being
   * written off the event loop (writeFirstSnapshot), and the caller saves again later to learn that it is in place.
   */
  saveChanged(read: (entryIds: readonly string[]) => ChangedState | undefined, full: () => StoredState): boolean {
    const base = this.base;
    if (base === undefined) {
      this.writeFirstSnapshot(full());
      this.noted.clear();
      return !this.pending();
    }
    const part = read([...this.noted]);
    if (part === undefined) return !this.pending();
    this.appendChanges(base, partChanges(base, part, part.revision, this.reportUnstorable), full, true);
    this.noted.clear();
    return !this.pending();
  }

  /**
   * Saves only what a withdrawal changed — the entries it concerns, their SVIDs, the bundles — as one journal batch:
   * its cost is the withdrawal's size and one fsync, where save() compares every entry and SVID (~5 ms with 10,000
   * of them), and an operator deleting entries one call at a time makes a withdrawal save per delete. What else
   * changed (new SVIDs, the revision) waits for the next save(): the data dir then holds the state saved before with
   * the withdrawal applied — no grant the agent did not hold before, and an older revision, which only makes the
   * server send more on reconnect. `full` is read when a snapshot must be written instead (none yet, or the
   * withdrawal takes away most SVIDs on disk, as a ban does: withdrawsMostKeys); a compaction due waits for the next
   * save of every change, since the base is not `full()` after this one. Returns true when saved, false when pending,
   * as saveChanged: pending only while no state is on disk at all, so nothing on disk grants what it withdrew.
   */
  saveWithdrawal(part: WithdrawnState, full: () => StoredState): boolean {
    const base = this.base;
    if (base === undefined) {
      this.writeFirstSnapshot(full());
      this.noted.clear();
      return !this.pending();
    }
    this.appendChanges(base, partChanges(base, part, base.revision, this.reportUnstorable), full, false);
    return !this.pending();
  }

  /** Whether the first snapshot is being written off the event loop, the saves made since pending with it. */
  pending(): boolean {
    return this.compaction?.first === true;
  }

  /**
   * Writes a whole snapshot when there is no base to append to. With no state.json on disk at all (a new agent's first
   * sync, a state set aside at start), off the event loop, as a compaction (startCompaction): at 10,000 SVIDs writing
   * it at once held the event loop 1.7-1.9 s on a loaded VM. Its base is `state` at once, so that later saves append
   * to its journal; they are pending with it (append), and a kill before the rename leaves no state, as before any
   * save. With a state.json on disk (a journal append that could not be cut back, a directory fsync that failed), at
   * once (compact), as a withdrawal saved meanwhile in the new journal alone would be lost to a kill before the rename,
   * and the snapshot on disk grant it again.
   */
  private writeFirstSnapshot(state: StoredState): void {
    if (!this.firstSnapshotFailed && !fs.existsSync(this.snapshotFile) && this.startCompaction(state, true)) {
      this.base = persistedOf(state);
      return;
    }
    this.compact(state);
  }

  /**
   * Appends `diff` as one batch, and moves the base; or writes a snapshot of `full()` at once instead, when `diff`
   * takes away most of the SVIDs on disk (withdrawsMostKeys). Once the journal has outgrown the snapshot, a save that
   * took every change (`whole`: the base is then `full()`) starts a compaction (startCompaction); a withdrawal alone
   * leaves it to the next save.
   */
  private appendChanges(base: Persisted, diff: Changes | undefined, full: () => StoredState, whole: boolean): void {
    if (diff !== undefined) {
      if (withdrawsMostKeys(base, diff)) {
        this.compact(full());
        return;
      }
      const line = encodeJournalBatch(diff.batch);
      this.append(line);
      this.journalBytes += Buffer.byteLength(line);
      // The base follows in place: rebuilding maps of 10,000 items on every save would be garbage for nothing.
      base.revision = diff.revision;
      base.bundle = diff.bundle;
      base.federated = diff.federatedBundles;
      for (const id of diff.removedEntries) base.entries.delete(id);
      for (const e of diff.entries) base.entries.set(e.id, e);
      for (const id of diff.removedSvids) base.svids.delete(id);
      for (const s of diff.svids) base.svids.set(s.entryId, s.version);
    }
    if (this.oldJournalsLeft) this.removeOldJournals();
    const limit = this.compactAtBytes ?? Math.max(MIN_COMPACTION_BYTES, this.snapshotBytes);
    if (whole && this.compaction === undefined && this.journalBytes > limit) this.startCompaction(full());
  }

  /** Whether a compaction is under way (its snapshot being written off the event loop). */
  compacting(): boolean {
    return this.compaction !== undefined;
  }

  /** Settles when the last compaction started has ended (taken effect, failed or been given up) and cleaned up after itself. */
  compactionSettled(): Promise<void> {
    return this.compactionEnded;
  }

  /** Stops saving; a first snapshot still being written off the event loop is written at once first (finishFirstSnapshot). */
  close(): void {
    const c = this.compaction;
    if (c?.first === true) this.finishFirstSnapshot(c);
    this.cancelCompaction();
    this.closeJournal();
  }

  private journalFile(): string {
    return path.join(this.dir, journalFileName(this.generation));
  }

  private append(line: string): void {
    const first = this.compaction;
    if (first?.first === true) {
      // No snapshot on disk reads a journal yet: the batch goes to the first snapshot's journal alone, pending with it.
      try {
        first.bytes += writeFully(first.fd, line);
        fs.fsyncSync(first.fd);
      } catch (err) {
        // The journal, a torn batch in it, goes with the snapshot; the next save writes a whole one at once.
        this.log.error({ err }, 'cannot write the journal of the first agent state snapshot; it is given up, and the next save writes the state at once');
        this.compactionFailed();
        throw err;
      }
      return;
    }
    if (this.fd === undefined) {
      const file = this.journalFile();
      if (!fs.existsSync(file)) this.journalNameUnsynced = true;
      this.fd = fs.openSync(file, 'a', 0o600);
    }
    // The new name must be durable too, or a power cut could lose the journal with the batches it holds. A failure
    // fails this save, and the next one tries again (the file is open by then, so nothing else would).
    if (this.journalNameUnsynced) {
      fsyncDir(this.dir);
      this.journalNameUnsynced = false;
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
    // Saved where a restart reads it now. The journal of a compaction under way takes it too, before the save
    // returns: the compaction's snapshot may be renamed in at any turn from now on, and a restart then reads that
    // journal instead. A failure there only gives the compaction up (the batch is saved): a later save starts another.
    const c = this.compaction;
    if (c === undefined) return;
    try {
      c.bytes += writeFully(c.fd, line);
      fs.fsyncSync(c.fd);
    } catch (err) {
      this.log.error({ err }, 'cannot write the journal of the agent state snapshot being rewritten; the rewrite is given up, the state is saved as before');
      this.compactionFailed();
    }
  }

  /**
   * Rewrites the snapshot as `state` (which the base is: every change is in the journal) without holding the event
   * loop: its ~20 MB at 10,000 SVIDs are encoded chunk by chunk and written in libuv's thread pool (stageSnapshot),
   * which took 1.1-1.3 s of the event loop on a loaded VM when done at once. Meanwhile saves go on as before, each
   * batch appended to the current journal and then to the new generation's journal (append), which this creates now,
   * empty. Once the temp file is fsynced, in one turn: rename it over state.json, fsync the directory, and from then
   * on append to the new journal alone; the old one is removed after. A kill -9 at any moment leaves state.json at the
   * old generation with its journal, holding every batch saved, or at the new one with its journal, holding every
   * batch saved since `state`: loadState reads the journal state.json names and removes the other.
   */
  private startCompaction(state: StoredState, first = false): boolean {
    let next = this.generation;
    for (const name of fs.readdirSync(this.dir)) next = Math.max(next, journalGeneration(name) ?? 0);
    next += 1;
    let fd: number;
    try {
      fd = fs.openSync(path.join(this.dir, journalFileName(next)), 'wx', 0o600);
    } catch (err) {
      if (first) {
        // Written at once instead (writeFirstSnapshot), which fails the save if the disk refuses that too.
        this.firstSnapshotFailed = true;
        return false;
      }
      this.log.error({ err }, 'cannot start rewriting the agent state snapshot; the journal goes on');
      this.compactAtBytes = this.journalBytes + MIN_COMPACTION_BYTES;
      return false;
    }
    const c: Compaction = { generation: next, first, state, fd, bytes: 0, cancelled: false, done: Promise.resolve() };
    this.compaction = c;
    c.done = stageSnapshot(this.snapshotFile, 0o600, encodeStateChunks(state, next, this.reportUnstorable), () => c.cancelled)
      .then(({ tmp, bytes }) => this.finishCompaction(c, tmp, bytes, state))
      .catch((err: unknown) => {
        if (err instanceof StagingCancelled || c.cancelled) return;
        if (c.first) this.log.error({ err }, 'cannot write the first agent state snapshot; it is not saved yet, and the next save writes it at once');
        else this.log.error({ err }, 'cannot rewrite the agent state snapshot; the journal goes on, and a later save tries again');
        if (this.compaction === c) this.compactionFailed();
      });
    this.compactionEnded = c.done;
    return true;
  }

  /** Puts the staged snapshot of compaction `c` in place, in one turn (startCompaction). */
  private async finishCompaction(c: Compaction, tmp: string, bytes: number, state: StoredState): Promise<void> {
    if (c.cancelled || this.compaction !== c) {
      fs.rmSync(tmp, { force: true });
      return;
    }
    try {
      fs.chmodSync(tmp, 0o600);
      fs.renameSync(tmp, this.snapshotFile);
    } catch (err) {
      // The rename's error is the one to report; a temp file left behind is removed at the next start.
      fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
    this.compaction = undefined;
    this.closeJournal();
    this.fd = c.fd;
    this.generation = c.generation;
    this.journalBytes = c.bytes;
    this.snapshotBytes = bytes;
    this.compactAtBytes = undefined;
    try {
      fsyncDir(this.dir);
      // The new journal's name is durable with the rename, and so is any name created earlier whose fsync failed.
      this.journalNameUnsynced = false;
    } catch (err) {
      // The rename may not survive a power cut, and with it the new journal's name: the next save writes a whole
      // snapshot (compact), as after a failed directory fsync there.
      this.base = undefined;
      this.log.error({ err }, 'cannot make the rewritten agent state snapshot durable (directory fsync); the next save writes it again');
      return;
    }
    this.log.debug({ bytes, entries: state.entries.length, svids: state.svids.length }, 'agent state snapshot written');
    // Off the event loop too: the old journal can be as big as the snapshot. A kill before it is gone leaves it to loadState.
    const old = fs.readdirSync(this.dir).filter((name) => journalGeneration(name) !== undefined && journalGeneration(name) !== c.generation);
    const failed = await Promise.all(old.map((name) => fs.promises.rm(path.join(this.dir, name), { force: true }).then(() => undefined, (err: unknown) => ({ name, err }))));
    const left = failed.filter((f) => f !== undefined);
    this.reportOldJournals(left.map((f) => f.name), left[0]?.err);
  }

  /**
   * Gives the compaction under way up, as a failure: a later save starts another once the journal has grown on. A
   * first snapshot is written at once by the next save instead (writeFirstSnapshot).
   */
  private compactionFailed(): void {
    if (this.pending()) this.firstSnapshotFailed = true;
    this.cancelCompaction();
    this.compactAtBytes = this.journalBytes + MIN_COMPACTION_BYTES;
  }

  /**
   * Gives the compaction under way up: it renames nothing, and its journal goes (no snapshot names it). A first
   * snapshot's saves go with it, and no snapshot is on disk to append to: the next save writes a whole one.
   */
  private cancelCompaction(): void {
    const c = this.compaction;
    if (c === undefined) return;
    c.cancelled = true;
    this.compaction = undefined;
    if (c.first) this.base = undefined;
    try {
      fs.closeSync(c.fd);
    } catch {
      // Closed already or never usable: nothing to release.
    }
    // A removal the disk refuses must not throw: this runs after a batch was saved (append), in the compaction's own
    // failure handler (where a throw is an unhandled rejection, which ends the agent) and in close(). What is left
    // is harmless: no snapshot names that generation, later ones are numbered past it, and loadState removes it.
    try {
      fs.rmSync(path.join(this.dir, journalFileName(c.generation)), { force: true });
    } catch (err) {
      this.log.warn({ err, journal: journalFileName(c.generation) }, 'cannot remove the journal of the agent state snapshot rewrite given up; the next start removes it');
    }
  }

  /**
   * Writes a full snapshot at once, on the event loop, that starts a new, empty journal, then removes the old
   * journals: when there is no base to append to, and for a withdrawal of most keys (withdrawsMostKeys), whose keys
   * must leave the disk now. A compaction under way is given up first: its snapshot is older than this one.
   */
  private compact(state: StoredState): void {
    this.cancelCompaction();
    let next = this.generation;
    for (const name of fs.readdirSync(this.dir)) next = Math.max(next, journalGeneration(name) ?? 0);
    next += 1;
    const written = this.writeSnapshotAtOnce(state, next);
    try {
      fsyncDir(this.dir);
      // Every name in the directory is durable now, a journal created earlier whose own fsync failed among them.
      this.journalNameUnsynced = false;
    } catch (err) {
      // The new snapshot is in place and names generation `next`, while this persister still appends to the old
      // generation's journal, which that snapshot no longer reads: without a base, the next save writes a whole
      // snapshot again instead of appending where a restart would not look.
      this.base = undefined;
      throw err;
    }
    this.closeJournal();
    this.generation = next;
    this.journalBytes = 0;
    this.snapshotBytes = written;
    this.compactAtBytes = undefined;
    this.base = persistedOf(state);
    this.log.debug({ bytes: written, entries: state.entries.length, svids: state.svids.length }, 'agent state snapshot written');
    this.removeOldJournals();
  }

  /** Writes `state` as the snapshot of `generation` at once, on the event loop, and renames it in; returns its size. */
  private writeSnapshotAtOnce(state: StoredState, generation: number): number {
    let written = 0;
    const tmp = stageFile(this.snapshotFile, 0o600, (fd) => {
      for (const chunk of encodeStateChunks(state, generation, this.reportUnstorable)) written += writeFully(fd, chunk);
    });
    try {
      fs.chmodSync(tmp, 0o600);
      fs.renameSync(tmp, this.snapshotFile);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    return written;
  }

  /**
   * Writes the first snapshot `c` at once, on the event loop, when the agent stops before it is in place: the saves
   * made since it started are pending in its journal, which it names, and are saved with it. The background write stops
   * (cancelled) and removes its temp file. A failure is logged, not thrown (the store must still release its lock):
   * the state is then not saved, as when the agent stops before its first save, and the next start gets it all from
   * the server.
   */
  private finishFirstSnapshot(c: Compaction): void {
    c.cancelled = true;
    this.compaction = undefined;
    let renamed = false;
    try {
      const bytes = this.writeSnapshotAtOnce(c.state, c.generation);
      renamed = true;
      fsyncDir(this.dir);
      this.log.info({ bytes, entries: c.state.entries.length, svids: c.state.svids.length }, 'the first agent state snapshot, still being written as the agent stops, is written at once');
    } catch (err) {
      this.log.error(
        { err },
        renamed
          ? 'the first agent state snapshot is written as the agent stops, but cannot be made durable (directory fsync): a power cut may lose it'
          : 'cannot write the first agent state snapshot as the agent stops: the state is not saved, and the next start gets it from the server',
      );
    }
    try {
      fs.closeSync(c.fd);
      if (!renamed) fs.rmSync(path.join(this.dir, journalFileName(c.generation)), { force: true });
    } catch {
      // A journal no snapshot names is removed at the next start (loadState).
    }
    this.base = undefined;
  }

  /**
   * Removes the journals of generations other than the current one, which no snapshot on disk names any more. A
   * removal the disk refuses does not fail the save that called it (the snapshot and its journal are in place, the
   * state saved): it is logged, and tried again at every later save until it succeeds; a restart removes them too
   * (loadState). Until then they hold what the snapshot took away, a ban's keys among them.
   */
  private removeOldJournals(): void {
    const left: string[] = [];
    let cause: unknown;
    for (const name of fs.readdirSync(this.dir)) {
      const generation = journalGeneration(name);
      if (generation === undefined || generation === this.generation || generation === this.compaction?.generation) continue;
      try {
        fs.rmSync(path.join(this.dir, name), { force: true });
      } catch (err) {
        left.push(name);
        cause ??= err;
      }
    }
    this.reportOldJournals(left, cause);
  }

  /** Notes the result of a removal of old journals (`left`: those the disk refused), logging only a change. */
  private reportOldJournals(left: string[], cause: unknown): void {
    const wereLeft = this.oldJournalsLeft;
    this.oldJournalsLeft = left.length > 0;
    if (left.length > 0 && !wereLeft) {
      this.log.warn(
        { err: cause, journals: left },
        'the agent state is saved, but the journals the new snapshot replaced cannot be removed (they may still hold keys it took away); later saves try again, and the next start removes them',
      );
    } else if (left.length === 0 && wereLeft) {
      this.log.info('the journals a new agent state snapshot replaced, which could not be removed, are removed now');
    }
  }

  private closeJournal(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
