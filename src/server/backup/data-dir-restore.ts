import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../../common/clock.js';
import { fsyncDir } from '../../common/atomic-file.js';
import { acquireDataDirLock } from '../../common/data-dir-lock.js';
import { aborted, failedPrecondition, isMeshidError, MeshidError } from '../../common/errors.js';
import { storageFailureCause } from '../../common/storage-failure.js';
import { openSqliteDatastore, type SqliteDatastore } from '../datastore/sqlite-datastore.js';
import { keysWithoutJournal, loadJournalAuthorities } from '../ca/journal-authorities.js';
import { KeyStore } from '../ca/key-store.js';
import type { CaRecord } from '../datastore/datastore.js';
import { DATASTORE_FILE } from './data-dir-backup.js';
import { fullDisk } from './full-disk.js';
import { copyPrivateFile, fsyncFile, listFiles } from './private-files.js';
import type { RestoreSource } from './restore-source.js';
import { mountPointRefusal, removeKilledFirstStart, RESTORE_STAGING_INFIX, type RestoreTarget } from './restore-target.js';
import { lockHeld, refuseIfServerRuns, SERVER_LOCK_FILE } from './server-lock-probe.js';

export interface RestoreResult {
  dir: string;
  from: string;
  trustDomain: string;
  /** Paths relative to `dir`, sorted, with their sizes in bytes (the lock file left out). */
  files: Array<{ path: string; size: number }>;
  datastoreSize: number;
  caKeys: number;
  /** Unexpired join tokens the backup held, now voided: each could have attested one more agent. */
  voidedJoinTokens: number;
  /** Staging directories of restores a kill -9 interrupted, removed first. */
  removedLeftovers: string[];
  /**
   * Directories named like one but owned by another user, left alone: what a restore run as that user left (then a
   * copy of the CA keys), or a directory of theirs that only shares the name. Their owner is to look.
   */
  othersLeftovers: Array<{ dir: string; uid: number }>;
}

/**
 * Makes `target.dir` a data dir holding the backup `source`, offline (no server may run on it meanwhile). Everything
 * happens in a staging directory beside it, on its file system: the files are copied (0600, fsynced), the datastore is
 * opened there (the checks a start makes: a meshid datastore of a schema this version knows), the keys its CA journal
 * names are checked to be there and to match it (as a start checks them), and every join token is voided, since the backup's tokens include ones used after
 * it was taken, which would attest an agent again. Only then is the staging directory renamed into place, in one
 * rename(2): a kill -9 at any moment leaves no data dir (or the empty one that was there) or a complete one with its
 * tokens voided, never a data dir a server could start on with them. The staging directory holds a server's lock
 * (server.lock, carried into the data dir by the rename) until the end, so that a server started on the data dir the
 * moment it appears waits for nothing half done, and a second restore can tell a staging directory in use from one a
 * kill left, which it removes.
 */
export async function restoreDataDir(
  source: RestoreSource,
  target: RestoreTarget,
  clock: Clock = systemClock,
  interrupted?: AbortSignal,
): Promise<RestoreResult> {
  // An interrupt (its reason the signal's name) stops it before the rename, the staging directory removed; after the
  // rename the data dir is complete and the restore ends as it would have.
  const stopIfInterrupted = async (): Promise<void> => {
    // The copies are synchronous: a signal's handler runs, and aborts, only in a turn of the event loop.
    await new Promise((resolve) => setImmediate(resolve));
    if (interrupted?.aborted === true) {
      throw aborted(`interrupted by ${String(interrupted.reason)}: nothing was restored, ${target.dir} was not made; run the restore again`);
    }
  };
  const { removed: removedLeftovers, others: othersLeftovers } = removeInterruptedRestores(target);
  let staging = newStagingPath(target);
  let unlock: (() => void) | undefined;
  let renamed = false;
  try {
    const caKeys = source.files.filter((f) => path.dirname(f) === path.join('ca', 'keys'));
    let voidedJoinTokens: number;
    let keysDir: string;
    try {
      for (let attempt = 1; unlock === undefined; attempt++) {
        fs.mkdirSync(staging, { mode: 0o700 });
        try {
          fs.chmodSync(staging, 0o700);
          unlock = acquireDataDirLock(path.join(staging, SERVER_LOCK_FILE), 'meshid-server restore');
        } catch (err) {
          // Until locked it looks like a killed restore's leftover: another restore into this data dir took it for
          // one and removes it (or has). Not this restore's any more; it starts again under a new name.
          if (attempt === MAX_STAGING_ATTEMPTS || (fs.existsSync(staging) && !lockHeld(staging))) throw err;
          staging = newStagingPath(target);
        }
      }
      keysDir = path.join(staging, 'ca', 'keys');
      fs.mkdirSync(keysDir, { recursive: true, mode: 0o700 });
      for (const file of source.files) {
        const from = path.join(source.dir, file);
        copyPrivateFile(from, path.join(staging, file), () => failedPrecondition(`${from} vanished while it was copied: is a backup being written into ${source.dir}?`));
        await stopIfInterrupted();
      }
      voidedJoinTokens = await prepareDatastore(source, staging, new Set(caKeys.map((f) => path.basename(f, '.pem'))), clock);
      for (const file of listFiles(staging)) if (file.path !== SERVER_LOCK_FILE) fsyncFile(path.join(staging, file.path));
      for (const dir of [keysDir, path.dirname(keysDir), staging]) fsyncDir(dir);
    } catch (err) {
      throw restoreWriteError(err, staging, target);
    }
    await stopIfInterrupted();
    removeKilledFirstStart(target.dir);
    renameIntoPlace(staging, target.dir);
    renamed = true;
    fsyncDir(target.parent);
    const files = listFiles(target.dir).filter((f) => f.path !== SERVER_LOCK_FILE);
    return {
      dir: target.dir,
      from: source.dir,
      trustDomain: source.trustDomain,
      files,
      datastoreSize: files.find((f) => f.path === DATASTORE_FILE)!.size,
      caKeys: caKeys.length,
      voidedJoinTokens,
      removedLeftovers,
      othersLeftovers,
    };
  } finally {
    unlock?.();
    if (!renamed) fs.rmSync(staging, { recursive: true, force: true });
  }
}

const MAX_STAGING_ATTEMPTS = 3;

/** How far a restore moves the datastore's change counter past the backup's (prepareDatastore). */
export const REVISIONS_SKIPPED_BY_RESTORE = 2 ** 32;

function newStagingPath(target: RestoreTarget): string {
  return path.join(target.parent, `${path.basename(target.dir)}${RESTORE_STAGING_INFIX}${randomBytes(6).toString('hex')}`);
}

/**
 * Opens the staged datastore as a start would (which also replays the -wal of a stopped server's data dir copied with
 * it, into the copy), checks the CA journal against the keys copied, voids every join token and closes it, checkpointed
 * into the one file. Returns how many tokens were still valid. A refusal names the backup's files, of which the staged
 * ones are byte-for-byte copies.
 */
async function prepareDatastore(source: RestoreSource, staging: string, keyIds: ReadonlySet<string>, clock: Clock): Promise<number> {
  const asInBackup = (err: unknown): unknown =>
    err instanceof MeshidError ? failedPrecondition(`cannot restore ${source.dir}: ${err.message.replaceAll(staging, source.dir)}`, err) : err;
  let ds;
  try {
    ds = await openSqliteDatastore({ file: path.join(staging, DATASTORE_FILE), clock });
  } catch (err) {
    throw asInBackup(err);
  }
  try {
    await checkIntact(ds, path.join(staging, DATASTORE_FILE));
    checkJournalKeys(await ds.listCaRecords(), keyIds, source, staging, clock.now());
    // Agents that were connected to the old server after the backup hold entries at revisions it took then, and Sync
    // sends an agent only the entries whose revision differs from the one it holds: a post-restore change landing on
    // such a number would never reach them. No server takes 2^32 revisions; 2^21 restores still stay below 2^53.
    await ds.advanceRevision(REVISIONS_SKIPPED_BY_RESTORE);
    // Expired ones are deleted too (housekeeping would have), but counted as `token revoke --all` counts: what was at risk.
    const now = clock.now();
    return (await ds.consumeAllJoinTokens()).filter((t) => t.expiresAt > now).length;
  } catch (err) {
    throw asInBackup(err);
  } finally {
    await ds.close();
  }
}

/**
 * Refuses a datastore SQLite's integrity check finds damaged (bit rot on the backup's medium, a copy cut short in its
 * middle). Opening it, its CA journal and its join tokens read a few pages; the rest would be put in place and
 * reported restored, for the server's start (its entry load) to refuse, or a later read to fail while serving.
 */
async function checkIntact(ds: SqliteDatastore, file: string): Promise<void> {
  let problems: string[];
  try {
    problems = await ds.integrityProblems();
  } catch (err) {
    // Too damaged for the check to go on: SQLite's own words are the cause (storageError keeps it).
    if (!isMeshidError(err, 'internal')) throw err;
    problems = [err.cause instanceof Error ? err.cause.message : err.message];
  }
  if (problems.length > 0) throw failedPrecondition(`the datastore ${file} is damaged (SQLite's integrity check: ${problems.join('; ')}): restore another backup`);
}

/**
 * What a start refuses, refused before anything is put in place: a journal naming a key the backup lacks (said here
 * as the backup's fault), keys beside an empty journal (a datastore copied without its -wal), and everything a start
 * checks of the keys that are there (journal-authorities.ts). Retired authorities already expired are skipped, as a
 * start skips them and drops their rows.
 */
function checkJournalKeys(records: readonly CaRecord[], keyIds: ReadonlySet<string>, source: RestoreSource, staging: string, now: number): void {
  const keysDir = path.join(source.dir, 'ca', 'keys');
  if (records.length === 0 && keyIds.size > 0) throw failedPrecondition(`${keysWithoutJournal(keysDir, [...keyIds])}; restore a complete backup`);
  for (const record of records) {
    if (record.state === 'old' && record.notAfter <= now) continue;
    if (!keyIds.has(record.keyId)) {
      throw failedPrecondition(
        `CA key file ${path.join(keysDir, `${record.keyId}.pem`)}, which the backup's CA journal names (${record.kind} ${record.id}), is missing: ` +
          'the backup is incomplete; restore another one',
      );
    }
  }
  const damaged = 'the backup is damaged; restore another one';
  loadJournalAuthorities(records, new KeyStore(staging), source.trustDomain, now, { keyMismatch: damaged, otherTrustDomain: damaged });
}

/**
 * A write of the staging copy that failed because of where it went (a full disk, a read-only file system, a parent
 * this user cannot write), worded for the operator: naming the data dir and the directory it is made in, not the
 * staging directory, which is removed by then. The lock's and the datastore's own wrappers are seen through to the
 * errno or SQLite error beneath. A full disk is resource_exhausted, the rest failed_precondition; a failed read of the
 * backup (an error naming a path outside the staging directory), a refusal or anything else passes as it is.
 */
function restoreWriteError(err: unknown, staging: string, target: RestoreTarget): unknown {
  let failure = err;
  while (failure instanceof MeshidError && failure.cause !== undefined) failure = failure.cause;
  // The datastore's own word for SQLITE_FULL (sqlite-errors.ts), which keeps no cause.
  if (failure instanceof MeshidError && failure.code === 'resource_exhausted') failure = { code: 'SQLITE_FULL' };
  const failedPath = (failure as NodeJS.ErrnoException | null)?.path;
  if (typeof failedPath === 'string' && failedPath !== staging && !failedPath.startsWith(`${staging}${path.sep}`)) return err;
  const cause = storageFailureCause(failure, target.parent);
  if (cause === undefined) return err;
  // From the cause, not the code: an I/O error (SQLite's, say) is told a full disk by looking at the disk.
  const full = cause.startsWith('the disk');
  const message =
    `cannot restore into ${target.dir}: writing it in ${target.parent} failed: ${cause}; nothing of it was kept. ` +
    (full ? 'Make room there (the backup\'s size, twice the datastore\'s at most), or restore into another directory' : 'Restore into a directory this user can write');
  return full ? fullDisk(message, err) : failedPrecondition(message, err);
}

/** The one rename that makes the data dir appear, complete; onto an empty directory that was there, it replaces it. */
function renameIntoPlace(staging: string, dir: string): void {
  try {
    fs.renameSync(staging, dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') {
      throw failedPrecondition(`${dir} was made or filled while the restore ran (a server started on it?): nothing was restored; move it aside and run the restore again`);
    }
    if (code === 'EBUSY' || code === 'EXDEV') {
      // A mount point made after the target was checked (one of the same device, a bind mount, is only seen here).
      throw mountPointRefusal(dir);
    }
    throw err;
  }
}

/**
 * Staging directories of this data dir whose restore was killed (no process holds their lock); refuses one in use.
 * Only a directory of this user's can be one: in a parent others may add to (a sticky /tmp) anyone can make a name
 * like it, and a restore run as root would delete another user's directory, or probe through a symbolic link to a
 * running server's data dir and refuse. Those are left alone; a name is all they share with a staging directory.
 */
function removeInterruptedRestores(target: RestoreTarget): { removed: string[]; others: Array<{ dir: string; uid: number }> } {
  const leftover = new RegExp(`^${escapeRegExp(path.basename(target.dir))}${escapeRegExp(RESTORE_STAGING_INFIX)}[0-9a-f]{12}$`);
  const euid = process.geteuid?.();
  const removed: string[] = [];
  const others: Array<{ dir: string; uid: number }> = [];
  for (const name of fs.readdirSync(target.parent)) {
    if (!leftover.test(name)) continue;
    const dir = path.join(target.parent, name);
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory()) continue;
    if (euid !== undefined && st.uid !== euid) {
      others.push({ dir, uid: st.uid });
      continue;
    }
    const inUse = (lock: string): Error => failedPrecondition(`another restore into ${target.dir} is running (it holds ${lock}): let it end first`);
    refuseIfServerRuns(dir, inUse);
    // Taken, so that a restore that made it a moment ago and locks it now is refused its lock, not its directory.
    let release: () => void;
    try {
      release = acquireDataDirLock(path.join(dir, SERVER_LOCK_FILE), 'meshid-server restore');
    } catch (err) {
      refuseIfServerRuns(dir, inUse);
      throw err;
    }
    try {
      // It holds a copy of the CA keys: not to be left lying about.
      fs.rmSync(dir, { recursive: true, force: true });
    } finally {
      release();
    }
    removed.push(dir);
  }
  return { removed, others };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
