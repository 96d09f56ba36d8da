import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { failedPrecondition } from '../../common/errors.js';
import { fullDisk } from './full-disk.js';
import { storageFailureCause } from '../../common/storage-failure.js';
import { AnchoredDirectory, type DirectoryIdentity } from './anchored-directory.js';
import { DATA_DIR_MARKER } from '../data-dir.js';
import { STAGING_INFIX, type BackupTarget } from './backup-target.js';
import { copyPrivateFile, fsyncFile, listFiles } from './private-files.js';
import { datastoreFileProblems } from './integrity-check.js';

/** The files of a data dir a restore needs, by their names there (data-dir.ts, server.ts, server-svid.ts). */
export const DATASTORE_FILE = 'datastore.sqlite3';
export const SERVER_SVID_FILE = 'server-svid.json';

/** What a backup reads from the running server. The consumer's view: the datastore, CA manager and key store give it. */
export interface BackupSources {
  dataDir: string;
  /** An online snapshot of the datastore into an existing empty file (SqliteDatastore.snapshotTo). */
  snapshot: { snapshotTo(file: string, signal?: AbortSignal): Promise<void> };
  /** The CA's turn: nothing of the journal or the key files changes while `fn` runs (CaManager.withJournalSettled). */
  ca: { withJournalSettled<T>(fn: (keyIds: readonly string[]) => Promise<T>): Promise<T> };
  /** The file holding a CA key (KeyStore.fileOf). */
  keyFile(keyId: string): string;
}

export interface BackupResult {
  dir: string;
  /** Paths relative to `dir`, sorted, with their sizes in bytes. */
  files: Array<{ path: string; size: number }>;
  datastoreSize: number;
  caKeys: number;
}

/**
 * Writes a backup of the running server's data dir into `target.dir`: a snapshot of the datastore, the CA keys its
 * journal names, the trust domain marker and the server's SVID; never server.lock, the -wal and -shm files or a
 * first-setup marker. The snapshot and the key copies are made in one turn of the CA, so every key the snapshot's
 * journal names is in the backup, and nothing else: a restored server starts from it as from the data dir at that
 * moment. Everything is written (0700 directories, 0600 files, fsynced) into a staging directory of its own and moved
 * into place at the end, meshid-server.json last, so a backup that fails or is interrupted never looks complete; on a
 * failure the staging directory is removed. `signal` stops it.
 *
 * The directory checked (`target.dir` when it exists, else its parent) is held open from the start and every file is
 * made through it (AnchoredDirectory): one swapped for a symbolic link since the check is refused, and one swapped
 * later does not take the files along, so nothing of the backup can land in a directory no check has seen.
 */
export async function writeBackup(sources: BackupSources, target: BackupTarget, signal?: AbortSignal): Promise<BackupResult> {
  signal?.throwIfAborted();
  // Staged on the file system of the backup: beside a directory to create, inside one given (a mount point, maybe).
  // A visible name: a kill -9 mid-backup leaves it for the operator to see and remove, and it never reads as a backup.
  const where = target.exists ? target.dir : target.parent;
  const stagingName = `${path.basename(target.dir)}${STAGING_INFIX}${randomBytes(6).toString('hex')}`;
  let anchor: AnchoredDirectory;
  try {
    anchor = AnchoredDirectory.open(where, target.anchor, () => replacedMeanwhile(where));
  } catch (err) {
    throw backupWriteError(err, where);
  }
  const opened: AnchoredDirectory[] = [];
  const scratch = path.join(sources.dataDir, `${SCRATCH_PREFIX}${randomBytes(6).toString('hex')}`);
  try {
    let staging: AnchoredDirectory;
    try {
      // The keys will sit in it: private before anything is written (the staging directory is, too).
      if (target.exists) fs.fchmodSync(anchor.fd, 0o700);
      staging = anchor.makePrivateDir(stagingName, () => changedMeanwhile(target.dir));
      opened.push(staging);
    } catch (err) {
      throw backupWriteError(err, where);
    }
    try {
      const ca = staging.makePrivateDir('ca', () => changedMeanwhile(target.dir));
      opened.push(ca);
      const keys = ca.makePrivateDir('keys', () => changedMeanwhile(target.dir));
      opened.push(keys);
      let caKeys = 0;
      await sources.ca.withJournalSettled(async (keyIds) => {
        await snapshotInto(sources, scratch, signal);
        for (const keyId of new Set(keyIds)) {
          const from = sources.keyFile(keyId);
          copyPrivateFile(from, keys.at(path.basename(from)), () =>
            failedPrecondition(
              `CA key file ${from}, which the CA journal names, is missing: the live data dir is damaged (a restart would be ` +
                'refused too); restore that file from an earlier backup',
            ),
          );
          caKeys++;
        }
        // Written atomically by the server, and checked against the journal when a restored server starts: a copy of
        // the one in place is as good as the server's own after a restart, which it lets present the same SVID.
        copyIfPresent(path.join(sources.dataDir, SERVER_SVID_FILE), staging.at(SERVER_SVID_FILE));
      });
      // After the CA's turn, which the check would hold up for as long as it reads.
      await checkSnapshot(scratch, path.join(sources.dataDir, DATASTORE_FILE), signal);
      fs.copyFileSync(scratch, staging.at(DATASTORE_FILE), fs.constants.COPYFILE_EXCL);
      fsyncFile(staging.at(DATASTORE_FILE));
      copyPrivateFile(path.join(sources.dataDir, DATA_DIR_MARKER), staging.at(DATA_DIR_MARKER), () =>
        failedPrecondition(`${path.join(sources.dataDir, DATA_DIR_MARKER)} is missing from the live data dir`),
      );
      for (const dir of [keys, ca, staging]) dir.fsync();
      signal?.throwIfAborted();
      // Whatever DIR names now, the files go into the directory held open; were it moved away from DIR meanwhile, the
      // backup would be reported where it is not.
      if (!stillNames(where, target.anchor)) throw replacedMeanwhile(where);
      if (target.exists) moveIntoPlace(staging, stagingName, anchor, target.dir);
      else renameIntoPlace(anchor, staging, stagingName, path.basename(target.dir), target.dir);
      // The backup's directory, as held open: the staging directory's inode when it was renamed into place.
      const files = listFiles((target.exists ? anchor : staging).here);
      return { dir: target.dir, files, datastoreSize: files.find((f) => f.path === DATASTORE_FILE)!.size, caKeys };
    } catch (err) {
      fs.rmSync(anchor.at(stagingName), { recursive: true, force: true });
      throw backupWriteError(err, where);
    }
  } finally {
    // The check's read-only open of the WAL-mode snapshot leaves its -wal and -shm.
    for (const file of [scratch, `${scratch}-journal`, `${scratch}-wal`, `${scratch}-shm`]) fs.rmSync(file, { force: true });
    for (const dir of opened) dir.close();
    anchor.close();
  }
}

/**
 * Refuses a snapshot SQLite's integrity check finds damaged: the backup API copies pages as they are, so damage in the
 * live datastore where serving has not read yet (bit rot, a disk's bad sector) would be reported "Backup written",
 * and found only by the restore that needs it (which checks too). Run off the server's thread (integrity-check.ts).
 */
async function checkSnapshot(scratch: string, live: string, signal?: AbortSignal): Promise<void> {
  const problems = await datastoreFileProblems(scratch, signal);
  if (problems.length === 0) return;
  throw failedPrecondition(
    `the live datastore ${live} is damaged (SQLite's integrity check of its snapshot: ${problems.join('; ')}), so no backup was written: ` +
      'keep the backups you have; the server fails where it reads the damage, so plan to stop it and restore the last good backup ' +
      'into a new data dir (meshid-server restore)',
  );
}

/**
 * SQLite does not open the file it is given as given: it resolves a /proc/self/fd link to the path it reads as and
 * opens by that name, a lookup anyone who can rename in the backup's parent could redirect into a directory of
 * theirs (with the datastore's copy). So it snapshots into `scratch` in the data dir, which only the server's user can
 * change; it is checked there and copied into the backup through the directory held open (writeBackup), which removes
 * it. That takes the datastore's size again on the data dir's file system while the backup runs; a kill -9 meanwhile
 * leaves the scratch file, removed at the next start (removeBackupScratch).
 */
async function snapshotInto(sources: BackupSources, scratch: string, signal?: AbortSignal): Promise<void> {
  try {
    // Created here, so it is 0600 from its first byte (SQLite would create it with the umask's mode).
    fs.closeSync(fs.openSync(scratch, 'wx', 0o600));
    await sources.snapshot.snapshotTo(scratch, signal);
  } catch (err) {
    // Written on the data dir's file system, not the backup's: a full disk there must not be reported as the backup's.
    throw scratchWriteError(err, sources.dataDir, scratch);
  }
}

/** A failed write of the scratch snapshot, naming the data dir it was written in (the backup's own dir may have room). */
function scratchWriteError(err: unknown, dataDir: string, scratch: string): unknown {
  const cause = storageFailureCause(err, dataDir);
  if (cause === undefined) return err;
  const code = (err as { code?: unknown }).code;
  const message =
    `cannot snapshot the datastore into the data dir ${dataDir}, where a backup takes the datastore's size again while it runs: ` +
    `${cause}; nothing of the backup was kept`;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' ? fullDisk(message, err, scratch) : failedPrecondition(message, err);
}

/** A datastore snapshot in the making (snapshotInto): never part of the data dir's state. */
const SCRATCH_PREFIX = 'backup-snapshot.';

/**
 * Removes the scratch files of backups a kill -9 interrupted; at the start, with the data dir locked. Only files: a
 * backup never makes a directory there, so one by that name is someone's, and not a reason to refuse to start.
 */
export function removeBackupScratch(dataDir: string): void {
  for (const entry of fs.readdirSync(dataDir, { withFileTypes: true })) {
    if (entry.name.startsWith(SCRATCH_PREFIX) && !entry.isDirectory()) fs.rmSync(path.join(dataDir, entry.name), { force: true });
  }
}

/** The server's SVID file is absent before its first save, or where it could not be saved: a restore mints a new one. */
function copyIfPresent(from: string, to: string): void {
  if (fs.existsSync(from)) copyPrivateFile(from, to, () => failedPrecondition(`${from} vanished while it was copied`));
}

const changedMeanwhile = (dir: string): Error =>
  failedPrecondition(`the backup directory ${dir} was made or filled by someone else while the backup was written: give a new one`);

const replacedMeanwhile = (dir: string): Error =>
  failedPrecondition(
    `${dir} was replaced (by a symbolic link or another directory) after the backup directory was checked, so nothing of the ` +
      `backup was written: see who else can change ${path.dirname(dir)}, and give a directory only root and the server's user can change`,
  );

/** Whether `dir` still names the directory checked, not a link or another directory put in its place. */
function stillNames(dir: string, anchor: DirectoryIdentity): boolean {
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  return st !== undefined && st.dev === anchor.dev && st.ino === anchor.ino;
}

/** The whole backup appears at once, by one rename(2) (which fails on anything made at `name` since the check). */
function renameIntoPlace(parent: AnchoredDirectory, staging: AnchoredDirectory, stagingName: string, name: string, dir: string): void {
  try {
    fs.renameSync(parent.at(stagingName), parent.at(name));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') throw changedMeanwhile(dir);
    throw err;
  }
  // rename(2) takes the staging directory by name: in a parent others may rename in (group write is let through), a
  // directory of theirs put under that name would be what lands at DIR. What is there must be the one written.
  if (!parent.holds(name, staging)) throw notOurs(dir);
  parent.fsync();
}


const notOurs = (dir: string): Error =>
  failedPrecondition(
    `the backup was not put in place: another directory was put under its staging name while it was written, and that one ` +
      `was moved to ${dir}; do not use ${dir}, see who else can change ${path.dirname(dir)}, and give a directory only root and the server's user can change`,
  );

/**
 * Into a directory that existed, its files move up one by one, meshid-server.json last: until it is there, neither a
 * server started on the directory nor a restore copied from it takes it for a data dir (data-dir.ts refuses a
 * directory without it that is not empty).
 */
function moveIntoPlace(staging: AnchoredDirectory, stagingName: string, into: AnchoredDirectory, dir: string): void {
  const others = fs.readdirSync(into.here).filter((name) => name !== stagingName);
  if (others.length > 0) throw changedMeanwhile(dir);
  const names = fs.readdirSync(staging.here).sort((a, b) => Number(a === DATA_DIR_MARKER) - Number(b === DATA_DIR_MARKER));
  const moved: string[] = [];
  try {
    for (const name of names) {
      if (name === DATA_DIR_MARKER) into.fsync();
      fs.renameSync(staging.at(name), into.at(name));
      moved.push(name);
    }
  } catch (err) {
    // The directory is left empty again, as it was given.
    for (const name of moved) fs.rmSync(into.at(name), { recursive: true, force: true });
    throw err;
  }
  fs.rmdirSync(into.at(stagingName));
  into.fsync();
}

/**
 * A write into the backup's directory that failed because of where it wrote, as the operator acts on it: a full disk
 * is resource_exhausted, anything else (read-only, not writable by the server's user) failed_precondition, naming
 * the directory. Nothing of the backup is kept either way. Other errors pass as they are.
 */
function backupWriteError(err: unknown, dir: string): unknown {
  const cause = storageFailureCause(err, dir);
  if (cause === undefined) return err;
  const code = (err as { code?: unknown }).code;
  const message = `cannot write the backup into ${dir}: ${cause}; nothing of it was kept`;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' ? fullDisk(message, err) : failedPrecondition(message, err);
}
