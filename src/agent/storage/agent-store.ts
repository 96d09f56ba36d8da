import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, fsyncDir, removeStaleTempFiles, stageFile, writeFileAtomic } from '../../common/atomic-file.js';
import { failedPrecondition, invalidArgument, isMeshidError, type MeshidError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { acquireDataDirLock } from '../../common/data-dir-lock.js';
import { storageFailureCause, storageSetupError } from '../../common/storage-failure.js';
import { applyJournalBatch, journalFileName, journalGeneration, readJournal } from './state-journal.js';
import type { ChangedState, WithdrawnState } from './state-changes.js';
import { StatePersister } from './state-persister.js';
import { decodeIdentity, encodeIdentity, isNewerStateFormat, parseStateDocument, type RawState, type StoredIdentity, type StoredState } from './stored-state.js';
import { restoreState } from './state-restore.js';
import { setAside } from './damaged-copies.js';
import { DamagedIdentity } from './damaged-identity.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';

/**
 * What a state document that cannot be restored is reported as. Parsing and restoring read only the document, so
 * every error they throw is the document's: a TypeError is a field of the wrong type (`"entries": [null]`), in a
 * file without the seal that would have vouched for its shape.
 */
function asDamage(err: unknown): MeshidError {
  if (isMeshidError(err)) return err;
  return invalidArgument(`it holds a value of the wrong type (${err instanceof Error ? err.message : String(err)})`, err);
}

/** Whether the snapshot restores by itself, without its journal. */
function snapshotRestores(bytes: Buffer, now: number): boolean {
  try {
    restoreState(parseStateDocument(bytes), now);
    return true;
  } catch {
    return false;
  }
}

/** The agent's own SVID and key: an agent without it needs a join token to start. */
export const IDENTITY_FILE = 'agent-svid.json';

const STATE_FILE = 'state.json';
const LOCK_FILE = 'agent.lock';

/**
 * The room the agent identity needs in the data dir, proved before a join token is spent on one. A real
 * agent-svid.json is 2.6 KB under a P-256 CA and 3.9 KB under an RSA-2048 one; an upstream CA's issuers and a PKI's
 * roots add a few KB each. 64 KiB covers those many times over, with the temp copy a renewal writes beside the old
 * file, and is nothing on a disk that can hold the agent's state at all.
 */
export const IDENTITY_ROOM_BYTES = 64 * 1024;

/**
 * The agent's data dir (0700): `agent-svid.json` (its own SVID and key), `state.json` (a snapshot of entries, bundles,
 * workload SVIDs and keys) continued by `state.<n>.journal` (the change sets saved since, state-journal.ts), and
 * `agent.lock`. All 0600. The documents are replaced atomically (write a temp file, fsync, rename, fsync the dir:
 * writeFileAtomic) and the journal only grows by whole fsynced batches, so a kill -9 at any moment leaves the
 * identity old or new, and the state at one of the versions that were saved (a torn last batch is dropped at load),
 * never a mix; identity and state are independent, so no write order between them matters. The snapshot names its
 * journal's generation: a snapshot rewritten by compaction starts a new journal, and journals of other generations
 * are leftovers of a compaction that was cut short, removed at load. A compaction writes its snapshot off the event
 * loop while saves go on: until it is renamed in, every batch goes to the old journal and then to the new one, so
 * whichever snapshot a kill leaves in place, its journal holds every batch saved. The first snapshot (no state.json
 * on disk) is written off the event loop the same way, its journal created first: until it is renamed in, a kill
 * leaves no state (its journal, named by no snapshot, is removed at load), so the agent's saves meanwhile answer
 * "pending" (saveChanges), not saved. The identity is written at once after every
 * attestation and renewal (room for it is proved before a join token is spent on one: checkRoomForIdentity); the
 * state is saved coalesced (StateWriter) — losing the last few hundred ms of it costs only a re-signing after restart,
 * never a wrong answer, because restored SVIDs are re-checked (restoreState). The snapshot is sealed with its SHA-256
 * and every journal batch carries a CRC-32, so damage is told from the agent's own bytes.
 */
export class AgentStore {
  private readonly persister: StatePersister;

  private constructor(
    readonly dataDir: string,
    private readonly log: Logger,
    private readonly unlock: () => void,
  ) {
    this.persister = new StatePersister(path.join(dataDir, STATE_FILE), log);
  }

  /**
   * Creates the data dir if needed (0700; missing parents 0755), takes its lock and removes temp files an earlier crash left. A data dir
   * that cannot be written (read-only, full) is refused with failed_precondition naming it and the cause.
   */
  static open(dataDir: string, log: Logger): AgentStore {
    if (fs.existsSync(dataDir) && !fs.statSync(dataDir).isDirectory()) throw failedPrecondition(`data dir ${dataDir} is not a directory`);
    try {
      // Parents as `mkdir -p` makes them (0755), as the workload socket's are: the socket often sits beside the data
      // dir (/x/api.sock, /x/data), and a parent made 0700 here locked other users' workloads out of it, then had the
      // agent warn about a directory it had made itself. Only the data dir holds secrets; it stays 0700.
      ensurePrivateDir(dataDir, { purpose: 'agent data directory', setting: '--data-dir, data_dir', parentsMode: 0o755 });
    } catch (err) {
      throw storageSetupError(
        err,
        dataDir,
        (cause) => `cannot use the data dir ${dataDir}: ${cause}. meshid-agent keeps its keys and state there: make it writable, or use another --data-dir`,
      );
    }
    const unlock = acquireDataDirLock(path.join(dataDir, LOCK_FILE), 'meshid-agent');
    removeStaleTempFiles(dataDir);
    return new AgentStore(dataDir, log, unlock);
  }

  /**
   * The stored agent identity, or undefined when the agent never attested. One a newer agent wrote stops start-up. A
   * damaged one (a disk fault or an edit: the file is written atomically) stops it too, unless `damaged: 'return'`:
   * then it is returned as a DamagedIdentity, left where it is, for the caller to decide (before anything is moved)
   * whether the agent can attest again, and to set it aside with setIdentityAside if so.
   */
  loadIdentity(): StoredIdentity | undefined;
  loadIdentity(options: { damaged: 'return' }): StoredIdentity | DamagedIdentity | undefined;
  loadIdentity(options: { damaged?: 'return' } = {}): StoredIdentity | DamagedIdentity | undefined {
    const bytes = this.read(IDENTITY_FILE);
    if (bytes === undefined) return undefined;
    try {
      return decodeIdentity(bytes.toString('utf8'));
    } catch (err) {
      if (isNewerStateFormat(err)) throw this.newerFormat(IDENTITY_FILE, err);
      const damaged = new DamagedIdentity(path.join(this.dataDir, IDENTITY_FILE), (err as Error).message, err);
      if (options.damaged === 'return') return damaged;
      throw damaged.refusal();
    }
  }

  /**
   * Moves a damaged agent identity aside for inspection (agent-svid.json.damaged), made durable: the agent then
   * starts as one whose identity file is missing, serving its stored state while it attests again with its join
   * token, as SPIRE's agent attests again when its SVID file cannot be read. Nothing is granted that the state did
   * not hold. A move that fails (a file system that refuses it, the file a mount point) is thrown as
   * failed_precondition naming the file, the data dir, the cause and what to do; so is a move done whose directory
   * fsync fails, saying where the file went and that the move may not last.
   */
  setIdentityAside(damaged: DamagedIdentity): void {
    let movedTo: string;
    try {
      movedTo = path.join(this.dataDir, setAside(this.dataDir, IDENTITY_FILE, `${IDENTITY_FILE}.damaged`, 'move'));
    } catch (err) {
      const cause = storageFailureCause(err, this.dataDir) ?? (err instanceof Error ? err.message : String(err));
      throw failedPrecondition(
        `${damaged.file} cannot be used (${damaged.reason}) and cannot be moved aside in the data dir ${this.dataDir} ` +
          `to attest again: ${cause}. Make ${this.dataDir} writable by meshid-agent (it saves its identity and state ` +
          `there), or move ${IDENTITY_FILE} out of it yourself, then start the agent again with its join token`,
        err,
      );
    }
    try {
      fsyncDir(this.dataDir);
    } catch (err) {
      // The move is done but a power cut may undo it: the agent would then find the damaged file again, so it does not
      // spend its join token on a data dir whose writes may not last. Started again, it finds no identity file.
      const cause = storageFailureCause(err, this.dataDir) ?? (err instanceof Error ? err.message : String(err));
      throw failedPrecondition(
        `${damaged.file} cannot be used (${damaged.reason}); it was moved aside to ${movedTo}, but the move cannot be made ` +
          `durable (the directory fsync of the data dir ${this.dataDir} failed: ${cause}), so the disk may be failing. Check the ` +
          `disk under ${this.dataDir}, then start the agent again with its join token: it then attests again (should a power cut ` +
          'have brought the damaged file back, it is set aside again)',
        err,
      );
    }
    this.log.error(
      { reason: damaged.reason, movedTo },
      'the stored agent identity cannot be used; the agent attests again with its configured join token, serving its stored state meanwhile',
    );
  }

  /**
   * Writes the identity atomically. Throws failed_precondition "cannot save the agent identity to <dir>: <cause>"
   * (the disk is full, read-only, ...); the file then still holds the identity saved before, if any.
   */
  saveIdentity(identity: StoredIdentity): void {
    try {
      writeFileAtomic(path.join(this.dataDir, IDENTITY_FILE), encodeIdentity(identity), 0o600);
    } catch (err) {
      throw this.writeFailure(`cannot save the agent identity to ${this.dataDir}`, err);
    }
  }

  /**
   * Removes the agent identity (a ban: its key is of no use any more, and a copy of the data dir should not carry it).
   * The removal is made durable; a failure is thrown as failed_precondition naming the file.
   */
  removeIdentity(): void {
    const file = path.join(this.dataDir, IDENTITY_FILE);
    try {
      fs.rmSync(file, { force: true });
      fsyncDir(this.dataDir);
    } catch (err) {
      throw this.writeFailure(`cannot remove the agent identity ${file}`, err);
    }
  }

  /**
   * Proves that the data dir can take the agent identity, before a join token is spent on one: writes and fsyncs a
   * placeholder of IDENTITY_ROOM_BYTES, then removes it. Random bytes, so that a compressing file system cannot
   * store it in less; a temp file's name, so that a crash meanwhile leaves it to removeStaleTempFiles. Throws
   * failed_precondition "the data dir <dir> cannot hold the agent identity: <cause>".
   */
  checkRoomForIdentity(): void {
    let placeholder: string;
    try {
      placeholder = stageFile(path.join(this.dataDir, IDENTITY_FILE), 0o600, (fd) => fs.writeFileSync(fd, randomBytes(IDENTITY_ROOM_BYTES)));
    } catch (err) {
      throw this.writeFailure(`the data dir ${this.dataDir} cannot hold the agent identity`, err);
    }
    try {
      fs.rmSync(placeholder, { force: true });
    } catch {
      // A placeholder that cannot be removed now has a temp file's name: the next start removes it.
    }
  }

  /** When the state (snapshot or journal) was last written, in ms since the epoch; undefined without one. */
  stateWrittenAt(): number | undefined {
    let newest: number | undefined;
    for (const name of fs.readdirSync(this.dataDir)) {
      if (name !== STATE_FILE && journalGeneration(name) === undefined) continue;
      const mtime = fs.statSync(path.join(this.dataDir, name), { throwIfNoEntry: false })?.mtimeMs;
      if (mtime !== undefined && (newest === undefined || mtime > newest)) newest = mtime;
    }
    return newest;
  }

  /**
   * The stored state with what is still servable at `now`, or undefined when there is none. A damaged state file (one
   * that cannot be parsed, whose seal no longer matches, or, unsealed, with a field of the wrong type) is moved aside
   * (kept for inspection) and the agent starts empty: the server has everything it held. So it does when the journal
   * cannot be replayed whole (damaged before its end, a complete last change set failing its checksum, or a change set
   * that passes its checksum but cannot be applied);
   * the journal is then copied aside as the culprit. A torn last change set (a stop while saving) is only dropped.
   * A state a newer agent wrote (a format above this one's) is refused with failed_precondition, and nothing is moved.
   */
  loadState(now: number): StoredState | undefined {
    const file = path.join(this.dataDir, STATE_FILE);
    const bytes = this.read(STATE_FILE);
    if (bytes === undefined) {
      this.removeJournals(undefined);
      return undefined;
    }
    let raw: RawState;
    try {
      raw = parseStateDocument(bytes);
    } catch (err) {
      // Not damage but a newer agent's state (a rollback): set aside, it would be lost to that agent when it runs again,
      // so it stays where it is, and so do its journals.
      if (isNewerStateFormat(err)) throw this.newerFormat(STATE_FILE, err);
      return this.setStateAside(err);
    }
    // Damaged: re-checking the SVIDs cannot tell a changed selector, which would hand an SVID to another workload.
    if (raw.seal === 'broken') return this.setStateAside(failedPrecondition(`${file} does not match its checksum (damaged or edited)`));
    const journalFile = path.join(this.dataDir, journalFileName(raw.journal));
    const journal = readJournal(journalFile);
    if (journal.damage !== undefined) {
      // A stop while saving only cuts the last change set short. Damage hit change sets the agent saved and acted on,
      // withdrawals among them: the state before the damage could grant what they took back.
      const { laterBatches, lastLine } = journal.damage;
      return this.setJournalAside(
        journalFile,
        raw.journal,
        lastLine
          ? 'the state journal\'s last change set fails its checksum though it is complete (it ends in its newline): ' +
              'not the mark of a stop while saving, which cuts the last one short, but of a disk fault or an edit'
          : `the state journal is damaged before its end (a change set in it fails its checksum, with ${laterBatches} valid ones after it): ` +
              'not the mark of a stop while saving, which only tears the last one, but of a disk fault or an edit',
        { damagedAtByte: journal.validBytes, lostChangeSets: laterBatches },
      );
    }
    let restored: ReturnType<typeof restoreState>;
    try {
      for (const batch of journal.batches) applyJournalBatch(raw, batch);
      restored = restoreState(raw, now);
    } catch (err) {
      // The journal is to blame when the snapshot restores without it: a batch that passes its checksum but cannot
      // be applied (written by hand, or damaged before its checksum was computed).
      if (journal.batches.length > 0 && snapshotRestores(bytes, now)) {
        return this.setJournalAside(
          journalFile,
          raw.journal,
          'the state journal holds a change set that passes its checksum but cannot be applied (written by hand, or damaged before it was saved)',
          { err: asDamage(err) },
        );
      }
      return this.setStateAside(err);
    }
    const { state, dropped } = restored;
    for (const d of dropped) this.log.info({ entryId: d.entryId, reason: d.reason }, 'a stored X509-SVID is not restored');
    if (journal.validBytes < journal.totalBytes) {
      this.log.warn({ file: journalFile, keptBytes: journal.validBytes, droppedBytes: journal.totalBytes - journal.validBytes }, 'the state journal ends in an incomplete change set (the agent stopped while saving); it is dropped');
    }
    this.removeJournals(raw.journal);
    this.persister.resume(raw, state, bytes.length, journal.validBytes);
    return state;
  }

  /**
   * The refusal of a file (`name`) a newer agent wrote: one line naming the formats and both ways on, and the data
   * dir left as it is.
   */
  private newerFormat(name: string, err: MeshidError): MeshidError {
    return failedPrecondition(
      `${path.join(this.dataDir, name)} cannot be read: ${err.message}. Run that newer meshid-agent (or a later one) on ${this.dataDir}; ` +
        `to go back to this version, restore a copy of the data dir taken before the upgrade, or move the data dir away and attest again with ${NEW_JOIN_TOKEN}`,
      err,
    );
  }

  /** A state.json that cannot be used: moved aside, journals removed, and the agent starts without stored state. */
  private setStateAside(err: unknown): undefined {
    const aside = path.join(this.dataDir, setAside(this.dataDir, STATE_FILE, `${STATE_FILE}.unreadable`, 'move'));
    this.removeJournals(undefined);
    this.log.error({ err: asDamage(err), movedTo: aside }, 'the stored state cannot be read; starting without it');
    return undefined;
  }

  /**
   * A journal that cannot be replayed whole (`why`): copied aside as evidence, and the agent starts without stored
   * state. Not from the snapshot alone, nor from the change sets before the damage: the ones lost may withdraw entries
   * and SVIDs that what is left still grants, so the snapshot is moved aside too, lest a later start read it without
   * its journal.
   */
  private setJournalAside(journalFile: string, generation: number, why: string, details: Record<string, unknown>): undefined {
    const copiedTo = this.copyJournalAside(generation);
    const snapshotMovedTo = path.join(this.dataDir, setAside(this.dataDir, STATE_FILE, `${STATE_FILE}.unreadable`, 'move'));
    this.removeJournals(undefined);
    this.log.error(
      { ...details, file: journalFile, copiedTo, snapshotMovedTo },
      `${why}; ${STATE_FILE} reads, but without the whole journal it may still grant what the journal withdrew, so the agent starts without stored state (the server sends everything)`,
    );
    return undefined;
  }

  /**
   * Copies the journal of `generation` aside for inspection, and returns where to, or "(none: <cause>)": a copy the
   * disk refuses (full) does not stop the agent.
   */
  private copyJournalAside(generation: number): string {
    try {
      // One name for every generation's journal, so that the bound holds across compactions too.
      return path.join(this.dataDir, setAside(this.dataDir, journalFileName(generation), 'state.journal.damaged', 'copy'));
    } catch (err) {
      return `(none: ${storageFailureCause(err, this.dataDir) ?? (err instanceof Error ? err.message : String(err))})`;
    }
  }

  /**
   * Saves the state: appends what changed since the last save to the journal (one fsynced batch), or writes a new
   * snapshot when there is none yet; once the journal has outgrown the snapshot, a new one is written off the event
   * loop (compaction, StatePersister.startCompaction). Saved when it returns: a first snapshot is written at once here
   * (the agent's saves, saveChanges, write it off the event loop).
   */
  saveState(state: StoredState): void {
    this.persister.save(state);
  }

  /** Notes entries whose entry or SVID changed, for the next saveChanges (StatePersister.noteChanged). */
  noteChanged(entryIds: Iterable<string>): void {
    this.persister.noteChanged(entryIds);
  }

  /**
   * Saves what changed since the last save, reading only the entries noted changed through `read`
   * (StatePersister.saveChanged); `full` is read only when a snapshot is due. Returns true when saved, false when
   * pending: with no state.json on disk, the first snapshot is written off the event loop, and it and the saves made
   * meanwhile are saved once it is renamed in (a kill before leaves no state, as before any save); a later save that
   * answers true says so, and compactionSettled() says when to make it (StateWriter). close() writes it at once if it
   * is still pending then.
   */
  saveChanges(read: (entryIds: readonly string[]) => ChangedState | undefined, full: () => StoredState): boolean {
    return this.persister.saveChanged(read, full);
  }

  /**
   * Saves what a withdrawal changed, at once and alone (StatePersister.saveWithdrawal); `full` is read only when a
   * snapshot is due. Returns true when saved, false when pending, as saveChanges.
   */
  saveWithdrawal(part: WithdrawnState, full: () => StoredState): boolean {
    return this.persister.saveWithdrawal(part, full);
  }

  /** Whether a compaction (the snapshot rewritten off the event loop, the first one among them) is under way. */
  compacting(): boolean {
    return this.persister.compacting();
  }

  /** Settles when the compaction under way, if any, has ended; never rejects. */
  compactionSettled(): Promise<void> {
    return this.persister.compactionSettled();
  }

  /** Journals other than the one of generation `keep` (all when undefined): leftovers of an interrupted compaction. */
  private removeJournals(keep: number | undefined): void {
    for (const name of fs.readdirSync(this.dataDir)) {
      const generation = journalGeneration(name);
      if (generation !== undefined && generation !== keep) fs.rmSync(path.join(this.dataDir, name), { force: true });
    }
  }

  /** Writes a first snapshot still pending at once (StatePersister.close), and releases the data dir lock. */
  close(): void {
    this.persister.close();
    this.unlock();
  }

  /** `what`: <the cause, in an operator's words (storage-failure.ts), or the error's own message>. */
  private writeFailure(what: string, err: unknown): MeshidError {
    const cause = storageFailureCause(err, this.dataDir) ?? (err instanceof Error ? err.message : String(err));
    return failedPrecondition(`${what}: ${cause}`, err);
  }

  private read(name: string): Buffer | undefined {
    try {
      return fs.readFileSync(path.join(this.dataDir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}
