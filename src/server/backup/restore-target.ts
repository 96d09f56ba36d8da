import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition, invalidArgument, type MeshidError } from '../../common/errors.js';
import { assertSafeDirectory } from '../../common/safe-directory.js';
import { unreachable } from './backup-target.js';
import { acquireDataDirLock } from '../../common/data-dir-lock.js';
import { leftByKilledFirstStart } from '../data-dir.js';
import { refuseIfServerRuns, SERVER_LOCK_FILE } from './server-lock-probe.js';

/** Where `meshid-server restore` puts a data dir, as checked. */
export interface RestoreTarget {
  /** The data dir to create, through the real path of its parent. */
  dir: string;
  parent: string;
}

/** What a restore puts between the data dir's name and a random suffix to name its staging directory beside it. */
export const RESTORE_STAGING_INFIX = '.restoring-';

/**
 * Checks the data dir `meshid-server restore` is to create. No server may hold it; it must not exist or be empty (what
 * a first start killed before its marker leaves counts as empty, as it does for `run`; removeKilledFirstStart): the
 * restored directory replaces it by one rename, and anything in it (above all the -wal file of a crashed server's
 * datastore, which SQLite would replay over the restored one) is the operator's to move aside, never this command's to
 * delete or mix with. Its parent must exist, on the file system the staging directory is made on, and neither may be
 * another user's to change (assertSafeDirectory, as for the data dir a server starts on). A data dir that is a mount
 * point is refused too: a rename cannot replace it.
 */
export function checkRestoreTarget(requested: string): RestoreTarget {
  if (requested === '') throw invalidArgument('the data dir is empty: give the directory to restore into with --data-dir or data_dir');
  const resolved = path.resolve(requested);
  const parentAsGiven = path.dirname(resolved);
  if (parentAsGiven === resolved) throw failedPrecondition(`cannot restore into ${resolved}: give a new directory`);
  let parent: string;
  try {
    parent = fs.realpathSync(parentAsGiven);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw failedPrecondition(`cannot restore into ${requested}: ${parentAsGiven} does not exist; create it first (the data dir itself is created, mode 0700)`);
    }
    throw unreachable(err, `cannot restore into ${requested}`, parentAsGiven) ?? err;
  }
  if (Buffer.byteLength(path.basename(resolved)) > MAX_NAME_BYTES) {
    throw invalidArgument(`cannot restore into ${requested}: its name is longer than ${MAX_NAME_BYTES} bytes, and the restore is staged under it plus a suffix; give a shorter one`);
  }
  const dir = path.join(parent, path.basename(resolved));
  const existing = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (existing !== undefined) {
    if (existing.isSymbolicLink()) {
      throw failedPrecondition(`cannot restore into ${requested}: it is a symbolic link; give the directory it points to, or a new one`);
    }
    if (!existing.isDirectory()) throw failedPrecondition(`cannot restore into ${requested}: it exists and is not a directory; move it aside, or give a new one`);
    refuseIfServerRuns(dir, (lock) => runningServer(requested, lock));
    // The lock no process holds (checked just above) and the marker's temp file, as `run` takes them.
    const entries = fs.readdirSync(dir).filter((name) => !leftByKilledFirstStart(dir, name));
    if (entries.length > 0) {
      const wal = entries.find((name) => name.endsWith('-wal'));
      throw failedPrecondition(
        `cannot restore into ${requested}: it is not empty (${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}` +
          `${wal !== undefined ? `, among them ${wal}, which SQLite would replay over the restored datastore` : ''}); ` +
          `a restore makes a new data dir and never deletes or mixes with what is there: move it aside (mv ${resolved} ${resolved}.before-restore) and run the restore again`,
      );
    }
    // Refused now, not when the rename into place fails (EBUSY, EXDEV) after the whole copy was made.
    if (existing.dev !== fs.statSync(parent).dev) throw mountPointRefusal(dir);
  }
  // The CA keys go there: nobody else may be able to swap them, or the directory, meanwhile.
  assertSafeDirectory(dir, 'data dir');
  return { dir, parent };
}

/**
 * Empties a data dir holding only what a first start killed before its marker left (its lock, the marker's temp file),
 * so that the restored directory's rename can replace it. Under the dir's lock: a server starting on it meanwhile is
 * refused here, or, once the lock file is gone, makes a new one, which fails the rename as a dir "made or filled". A
 * dir holding anything else is left for the rename to refuse.
 */
export function removeKilledFirstStart(dir: string): void {
  if (killedFirstStartLeft(dir) === undefined) return;
  const lockFile = path.join(dir, SERVER_LOCK_FILE);
  let release: () => void;
  try {
    release = acquireDataDirLock(lockFile, 'meshid-server restore');
  } catch (err) {
    refuseIfServerRuns(dir, (lock) => runningServer(dir, lock));
    throw err;
  }
  try {
    // Again under the lock: a start that held it before may have written its marker since.
    const left = killedFirstStartLeft(dir);
    if (left === undefined) return;
    for (const name of left) if (name !== SERVER_LOCK_FILE) fs.rmSync(path.join(dir, name), { force: true });
    // The last entry, removed while held: a start that opened it meanwhile is refused it while held, and once it is let
    // go finds the file gone and locks the path anew (data-dir.ts lockServerFile); one after makes a new file.
    fs.rmSync(lockFile, { force: true });
  } finally {
    release();
  }
}

/** The entries of `dir` when there are some and all are what a killed first start leaves; otherwise undefined. */
function killedFirstStartLeft(dir: string): string[] | undefined {
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return entries.length > 0 && entries.every((name) => leftByKilledFirstStart(dir, name)) ? entries : undefined;
}

function runningServer(dataDir: string, lock: string): MeshidError {
  return failedPrecondition(`cannot restore into ${dataDir}: a meshid-server is running on it (it holds ${lock}); stop it first, then move the data dir aside`);
}

/** A data dir that is a mount point: the restored directory cannot replace it by a rename. */
export function mountPointRefusal(dir: string): MeshidError {
  return failedPrecondition(
    `cannot restore into ${dir}: it is a mount point, which a rename cannot replace; restore into a new directory under it (e.g. ${dir}/server) and point data_dir there`,
  );
}

/** NAME_MAX (255) less the staging suffix (".restoring-" and 12 hex digits). */
const MAX_NAME_BYTES = 255 - 23;
