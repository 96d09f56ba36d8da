import type Database from 'better-sqlite3';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { invalidArgument, MeshidError, unavailable } from '../../common/errors.js';
import type {
  AttestedAgent, BundleDeleteMode, BundleWriteGuard, CaJournalChange, CaRecord, CaRecordFilter, CaState, Change, ChangeListener, CreateEntryResult, Datastore, EntryChanges,
  EntryFilter, EntryPage, EntryPatch, EntryWriteOptions, JoinToken, NewAgent, NewEntry, NewJoinToken, RegistrationEntry, StoredBundle,
  RevokedJwtKeyRecord, RevokedRootRecord, StoredRelationship,
} from './datastore.js';
import { isLockedOut, storageError } from './sqlite-errors.js';
import { SqliteLockEpisodes } from './sqlite-lock-episodes.js';
import { openSqliteFile, type SchemaUpgrade } from './sqlite-open.js';
import { requireTime } from './record-guards.js';
import { prepareStatements, type Statements } from './sqlite-statements.js';
import type { SqliteScope } from './sqlite-scope.js';
import * as registrationEntries from './sqlite-entries.js';
import * as bundles from './sqlite-bundles.js';
import * as relationships from './sqlite-relationships.js';
import * as joinTokens from './sqlite-join-tokens.js';
import * as agents from './sqlite-agents.js';
import * as caJournal from './sqlite-ca-journal.js';

export interface SqliteDatastoreOptions {
  /** The database file, created 0600 if absent (conventionally <data dir>/datastore.sqlite3). */
  file: string;
  clock: Clock;
  /** Where failures of change listeners, and another process holding the file locked, are reported. */
  log?: Logger;
  /** Told when the file held an older schema and was migrated to this version's. */
  onSchemaUpgrade?: (upgrade: SchemaUpgrade) => void;
}

/**
 * Opens the embedded SQLite datastore, creating and migrating it as needed. Throws MeshidError(failed_precondition)
 * for a file that is not a meshid datastore or whose schema is newer than this code, leaving that file unchanged.
 */
export async function openSqliteDatastore(options: SqliteDatastoreOptions): Promise<SqliteDatastore> {
  return new SqliteDatastore(openSqliteFile(options.file, options.clock, options.onSchemaUpgrade), options.clock, options.log);
}

/** Pages a snapshot copies per event-loop turn (~400 KiB at SQLite's default 4 KiB page): well under a millisecond. */
const SNAPSHOT_PAGES_PER_STEP = 100;

/**
 * The Datastore on better-sqlite3. Calls are synchronous underneath (each returns an already-settled Promise), so
 * within this process every method runs as one uninterrupted step; every write is one IMMEDIATE transaction, which
 * also serializes against other processes opening the same file.
 */
/**
 * Entries per read of listAllEntries, the event loop let go between reads. One read of every entry held the server's
 * event loop for as long as SQLite and better-sqlite3 took to build them all: 100,000 entries took 7.5 s of a 15 s
 * start on a loaded 2-core VM (~3.7 s for the rows alone), and the health listener, open by then, answered no probe
 * meanwhile. A page is ~40-200 ms there.
 */
const ENTRY_LOAD_PAGE = 5000;

export class SqliteDatastore implements Datastore {
  private closed = false;
  private readonly listeners = new Set<ChangeListener>();
  /** The revision taken by the write transaction in progress, and what it changed (one revision per transaction). */
  private txRevision: number | undefined;
  private readonly txKinds = new Set<Change['kind']>();
  /** The agents the transaction in progress changed (Change.agentIds). */
  private readonly txAgentIds: string[] = [];
  private readonly s: Statements;
  /** What the table families' operations (sqlite-entries, …) use of this datastore. */
  private readonly scope: SqliteScope;
  private readonly lockEpisodes: SqliteLockEpisodes;

  constructor(
    private readonly db: Database.Database,
    clock: Clock,
    private readonly log?: Logger,
  ) {
    this.s = prepareStatements(db);
    this.scope = { db, s: this.s, clock, bump: (kind) => this.bump(kind), bumpAgents: (spiffeIds) => this.bumpAgents(spiffeIds) };
    this.lockEpisodes = new SqliteLockEpisodes(clock, log, db.name, () => Number(db.pragma('busy_timeout', { simple: true })));
  }

  // ---- Registration entries ----

  createEntries(entries: NewEntry[], opts: EntryWriteOptions = {}): Promise<CreateEntryResult[]> {
    return this.write(() => registrationEntries.createEntries(this.scope, entries, opts));
  }

  getEntry(id: string): Promise<RegistrationEntry> {
    return this.read(() => registrationEntries.getEntry(this.scope, id));
  }

  listEntries(filter: EntryFilter = {}): Promise<EntryPage> {
    return this.read(() => registrationEntries.listEntries(this.scope, filter));
  }

  async listAllEntries(): Promise<RegistrationEntry[]> {
    const all: RegistrationEntry[] = [];
    for (let after = ''; ; ) {
      const page = await this.read(() => registrationEntries.entriesAfter(this.scope, after, ENTRY_LOAD_PAGE));
      for (const e of page) all.push(e);
      if (page.length < ENTRY_LOAD_PAGE) return all;
      after = page[page.length - 1]!.id;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  listEntriesByParentIds(parentIds: readonly string[]): Promise<RegistrationEntry[]> {
    return this.read(() => registrationEntries.listEntriesByParentIds(this.scope, parentIds));
  }

  updateEntry(id: string, patch: EntryPatch, opts: EntryWriteOptions = {}): Promise<RegistrationEntry> {
    return this.write(() => registrationEntries.updateEntry(this.scope, id, patch, opts));
  }

  deleteEntries(ids: readonly string[]): Promise<Array<{ id: string; error?: MeshidError }>> {
    return this.write(() => registrationEntries.deleteEntries(this.scope, ids));
  }

  countEntries(): Promise<number> {
    return this.read(() => registrationEntries.countEntries(this.scope));
  }

  // ---- Change feed ----

  currentRevision(): Promise<number> {
    return this.read(() => this.revision());
  }

  /**
   * Moves the change counter `by` ahead, offline (no change, no listener told): a restore does it so that no revision
   * taken after it equals one the old server took after the backup (data-dir-restore.ts). Returns the new revision.
   */
  advanceRevision(by: number): Promise<number> {
    return this.write(() => {
      this.s.advanceRevision.run(by);
      return this.revision();
    });
  }

  listEntryChangesSince(revision: number): Promise<EntryChanges> {
    return this.read(() => {
      if (!Number.isSafeInteger(revision) || revision < 0) throw invalidArgument(`revision must be a whole number ≥ 0, got ${revision}`);
      // One read transaction: the reads see the same snapshot even if another process writes or prunes meanwhile.
      return this.db.transaction((): EntryChanges => {
        const pruned = (this.s.getTombstonesPruned.get() as { value: number }).value;
        if (revision < pruned) {
          return { reset: true, entries: registrationEntries.allEntries(this.scope), revision: this.revision() };
        }
        return {
          upserts: registrationEntries.entriesSince(this.scope, revision),
          deletedIds: (this.s.tombstonesSince.all(revision) as Array<{ entry_id: string }>).map((r) => r.entry_id),
          revision: this.revision(),
        };
      }).deferred();
    });
  }

  pruneEntryTombstones(before: number): Promise<number> {
    return this.write(() => {
      requireTime('tombstone cutoff', before);
      const { revision } = this.s.newestTombstoneBefore.get(before) as { revision: number | null };
      if (revision === null) return 0;
      // Watermark and deletion commit together: a crash between them cannot leave deletions no reader is warned of.
      this.s.raiseTombstonesPruned.run(revision, revision);
      return this.s.pruneTombstones.run(before).changes;
    });
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  // ---- Join tokens ----

  createJoinToken(input: NewJoinToken): Promise<JoinToken> {
    return this.write(() => joinTokens.createJoinToken(this.scope, input));
  }

  consumeJoinToken(token: string): Promise<JoinToken | undefined> {
    return this.write(() => joinTokens.consumeJoinToken(this.scope, token));
  }

  consumeAllJoinTokens(): Promise<JoinToken[]> {
    return this.write(() => joinTokens.consumeAllJoinTokens(this.scope));
  }

  findJoinToken(token: string): Promise<JoinToken | undefined> {
    return this.read(() => joinTokens.findJoinToken(this.scope, token));
  }

  pruneJoinTokens(now: number): Promise<number> {
    return this.write(() => joinTokens.pruneJoinTokens(this.scope, now));
  }

  // ---- Attested agents ----

  createAgent(agent: NewAgent, options: { joinToken?: string } = {}): Promise<AttestedAgent> {
    return this.write(() => agents.createAgent(this.scope, agent, options));
  }

  getAgent(spiffeId: string): Promise<AttestedAgent | undefined> {
    return this.read(() => agents.getAgent(this.scope, spiffeId));
  }

  listAgents(filter: { datacenter?: string } = {}): Promise<AttestedAgent[]> {
    return this.read(() => agents.listAgents(this.scope, filter));
  }

  countLiveAgentsByDatacenter(now: number): Promise<Map<string, number>> {
    return this.read(() => agents.countLiveAgentsByDatacenter(this.scope, now));
  }

  updateAgentCert(spiffeId: string, certSerial: string, certNotAfter: number, renewedFrom: string, issuerId?: string): Promise<AttestedAgent> {
    return this.write(() => agents.updateAgentCert(this.scope, spiffeId, certSerial, certNotAfter, renewedFrom, issuerId));
  }

  setAgentVersion(spiffeId: string, version: string | undefined): Promise<void> {
    return this.write(() => agents.setAgentVersion(this.scope, spiffeId, version));
  }

  retirePreviousAgentCert(spiffeId: string, currentSerial: string): Promise<void> {
    return this.write(() => agents.retirePreviousAgentCert(this.scope, spiffeId, currentSerial));
  }

  evictAgent(spiffeId: string): Promise<void> {
    return this.write(() => agents.evictAgent(this.scope, spiffeId));
  }

  banAgent(spiffeId: string): Promise<AttestedAgent> {
    return this.write(() => agents.banAgent(this.scope, spiffeId));
  }

  pruneAgents(now: number): Promise<string[]> {
    return this.write(() => agents.pruneAgents(this.scope, now));
  }

  // ---- Bundles ----

  getBundle(trustDomain: string): Promise<StoredBundle | undefined> {
    return this.read(() => bundles.getBundle(this.scope, trustDomain));
  }

  setBundle(bundle: StoredBundle, options?: BundleWriteGuard & { relationship?: boolean }): Promise<void> {
    return this.write(() => bundles.setBundle(this.scope, bundle, options));
  }

  listBundles(): Promise<StoredBundle[]> {
    return this.read(() => bundles.listBundles(this.scope));
  }

  deleteBundle(trustDomain: string, mode: BundleDeleteMode = 'restrict'): Promise<number> {
    return this.write(() => bundles.deleteBundle(this.scope, trustDomain, mode));
  }

  // ---- Federation relationships ----

  createFederationRelationship(relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): Promise<void> {
    return this.write(() => relationships.createFederationRelationship(this.scope, relationship, seed));
  }

  updateFederationRelationship(relationship: StoredRelationship, seed?: { bundle: StoredBundle } & BundleWriteGuard): Promise<StoredRelationship> {
    return this.write(() => relationships.updateFederationRelationship(this.scope, relationship, seed));
  }

  deleteFederationRelationship(trustDomain: string): Promise<StoredRelationship> {
    return this.write(() => relationships.deleteFederationRelationship(this.scope, trustDomain));
  }

  listFederationRelationships(): Promise<StoredRelationship[]> {
    return this.read(() => relationships.listFederationRelationships(this.scope));
  }

  // ---- CA journal ----

  addCaRecord(record: CaRecord): Promise<void> {
    return this.write(() => caJournal.insertCaRecord(this.scope, record));
  }

  listCaRecords(filter: CaRecordFilter = {}): Promise<CaRecord[]> {
    return this.read(() => caJournal.listCaRecords(this.scope, filter));
  }

  setCaRecordState(id: string, state: CaState): Promise<void> {
    return this.write(() => caJournal.changeCaState(this.scope, id, state));
  }

  commitCaChange(change: CaJournalChange, bundle?: StoredBundle): Promise<void> {
    return this.write(() => caJournal.commitCaChange(this.scope, change, bundle));
  }

  listRevokedRoots(): Promise<RevokedRootRecord[]> {
    return this.read(() => caJournal.listRevokedRoots(this.scope));
  }

  listRevokedJwtKeys(): Promise<RevokedJwtKeyRecord[]> {
    return this.read(() => caJournal.listRevokedJwtKeys(this.scope));
  }

  // ---- Backup ----

  /**
   * Copies the database as committed into `file` (which must exist, empty: its mode is the caller's) with SQLite's
   * online backup, a few hundred KiB per event-loop turn, so the server keeps serving meanwhile. Commits made
   * through this connection while it runs reach the copy too: it ends as the database stood at its last step, one
   * consistent state, with nothing of the -wal file missing. `signal` stops it between steps. A failure is thrown as
   * SQLite reported it: mostly the copy's own storage (a full disk), which only the caller can name.
   */
  async snapshotTo(file: string, signal?: AbortSignal): Promise<void> {
    this.assertOpen();
    try {
      await this.db.backup(file, {
        progress: () => {
          signal?.throwIfAborted();
          return SNAPSHOT_PAGES_PER_STEP;
        },
      });
    } catch (err) {
      throw signal?.aborted ? signal.reason : err;
    }
  }

  /**
   * What SQLite's integrity check finds wrong with the file, at most `limit` problems; empty for a sound one. It reads
   * every page, which a start does not (its reads touch a few tables): a restore, offline, runs it so that a damaged
   * backup is refused rather than put in place for the start to fail on. Damage too deep for the check to go on is
   * thrown, as any read of a damaged file is.
   */
  integrityProblems(limit = 3): Promise<string[]> {
    return this.read(() => integrityCheckProblems((this.db.pragma(`integrity_check(${limit})`) as Array<{ integrity_check: string }>).map((r) => r.integrity_check), limit));
  }

  // ---- Lifecycle ----

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.db.close();
  }

  // ---- Internals ----

  /** Runs a read; errors become MeshidErrors. */
  private read<T>(fn: () => T): Promise<T> {
    try {
      this.assertOpen();
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(storageError(err));
    }
  }

  /** Runs fn in one IMMEDIATE transaction, then (only after the commit) tells the change listeners. */
  private write<T>(fn: () => T): Promise<T> {
    let result: T;
    let changes: Change[] = [];
    try {
      this.assertOpen();
      try {
        result = this.db.transaction(fn).immediate();
        const revision = this.txRevision;
        if (revision !== undefined) {
          changes = [...this.txKinds].map((kind) => (kind === 'agent' ? { kind, revision, agentIds: [...this.txAgentIds] } : { kind, revision }));
        }
      } finally {
        this.txRevision = undefined;
        this.txKinds.clear();
        this.txAgentIds.length = 0;
      }
    } catch (err) {
      if (isLockedOut(err)) this.lockEpisodes.refused();
      return Promise.reject(storageError(err));
    }
    this.lockEpisodes.written();
    for (const change of changes) this.emit(change);
    return Promise.resolve(result);
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('the datastore is closed');
  }

  private emit(change: Change): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (err) {
        this.log?.error({ err, change }, 'datastore change listener failed');
      }
    }
  }

  private revision(): number {
    return (this.s.getRevision.get() as { value: number }).value;
  }

  /** An 'agent' change naming the agents it concerns (Change.agentIds). */
  private bumpAgents(spiffeIds: readonly string[]): void {
    this.bump('agent');
    // One by one: a spread passes every ID as an argument, which throws past ~125,000 (a prune after an outage).
    for (const id of spiffeIds) this.txAgentIds.push(id);
  }

  /** Takes the next revision for the transaction in progress (once per transaction) and notes what kind changed. */
  private bump(kind: Change['kind']): number {
    if (this.txRevision === undefined) {
      this.s.bumpRevision.run();
      this.txRevision = this.revision();
    }
    this.txKinds.add(kind);
    return this.txRevision;
  }

}

/**
 * The problems in the rows of `PRAGMA integrity_check(limit)`, at most `limit`; empty for a sound file. Shared with
 * the backup's check, which runs off the server's thread (backup/integrity-check.ts).
 */
export function integrityCheckProblems(found: readonly string[], limit: number): string[] {
  if (found.length === 1 && found[0] === 'ok') return [];
  // A row may hold several problems, a line each, under a line naming the database.
  const lines = found.flatMap((row) => row.split('\n')).map((line) => line.trim());
  const problems = lines.filter((line) => line !== '' && !/^\*\*\* in database \S+ \*\*\*$/.test(line)).slice(0, limit);
  return problems.length > 0 ? problems : [...found];
}
