import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition, invalidArgument, type MeshidError } from '../../common/errors.js';
import { assertSafeDirectory } from '../../common/safe-directory.js';
import { unreachable } from './backup-target.js';
import { refuseIfServerRuns } from './server-lock-probe.js';

/** Where `meshid-server restore` puts a data dir, as checked. */
export interface RestoreTarget {
  /** The data dir to create, through the real path of its parent. */
  dir: string;
  parent: string;
}

/** What a restore puts between the data dir's name and a random suffix to name its staging directory beside it. */
export const RESTORE_STAGING_INFIX = '.restoring-';

/**
 * Checks the data dir `meshid-server restore` is to create. No server may hold it; it must not exist or be empty: the
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
    refuseIfServerRuns(dir, (lock) =>
      failedPrecondition(`cannot restore into ${requested}: a meshid-server is running on it (it holds ${lock}); stop it first, then move the data dir aside`),
    );
    const entries = fs.readdirSync(dir);
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

/** A data dir that is a mount point: the restored directory cannot replace it by a rename. */
export function mountPointRefusal(dir: string): MeshidError {
  return failedPrecondition(
    `cannot restore into ${dir}: it is a mount point, which a rename cannot replace; restore into a new directory under it (e.g. ${dir}/server) and point data_dir there`,
  );
}

/** NAME_MAX (255) less the staging suffix (".restoring-" and 12 hex digits). */
const MAX_NAME_BYTES = 255 - 23;
