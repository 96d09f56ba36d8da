import fs from 'node:fs';
import path from 'node:path';
import { DATA_DIR_MARKER } from '../data-dir.js';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import { assertSafeDirectory } from '../../common/safe-directory.js';
import { identityOf, type DirectoryIdentity } from './anchored-directory.js';

/** Where a backup goes, as checked: `dir` itself and its parent, both through real paths (no link left in them). */
export interface BackupTarget {
  /** The directory the backup goes into: absent, or empty when checked. */
  dir: string;
  parent: string;
  /**
   * Whether `dir` exists (empty): then it is filled where it is, since it may be a mount point (a disk mounted for
   * backups), whose files a rename beside it would not reach; otherwise it is created by a rename.
   */
  exists: boolean;
  /**
   * The directory the backup is written into as checked (`dir` when it exists, else `parent`): the writer holds that
   * inode open and refuses a path that names another one by then (a directory swapped for a symbolic link).
   */
  anchor: DirectoryIdentity;
}

/**
 * Checks the directory `meshid-server backup --out DIR` names. It is a path on the server's host, given absolute:
 * the server's working directory is not the caller's. It must lie outside the live data dir (a backup there would
 * be lost with it, and a restore would copy one into the other), and be new or an empty directory, so that a backup
 * never mixes with the files of another backup or anything else. The parent must exist: the server creates the
 * backup directory, not a tree of directories wherever a path was mistyped. No other user may be able to change what
 * is put there (assertSafeDirectory, as for the data dir).
 */
export function checkBackupTarget(requested: string, dataDir: string): BackupTarget {
  if (requested === '') {
    throw invalidArgument("the backup directory is required: an absolute path on the server's host, which must not exist yet or be empty");
  }
  if (requested.includes('\0')) throw invalidArgument('the backup directory contains a NUL character');
  if (!path.isAbsolute(requested)) {
    throw invalidArgument(
      `the backup directory "${requested}" is not an absolute path: the server writes the backup, and its working directory ` +
        "is not the caller's; give the absolute path on the server's host",
    );
  }
  const resolved = path.resolve(requested);
  if (Buffer.byteLength(path.basename(resolved)) > MAX_NAME_BYTES) {
    throw invalidArgument(
      `the backup directory's name "${path.basename(resolved)}" is longer than ${MAX_NAME_BYTES} bytes: the backup is staged ` +
        'under that name plus a suffix, which file systems cap at 255 bytes; give a shorter name',
    );
  }
  const parentAsGiven = path.dirname(resolved);
  if (parentAsGiven === resolved) throw failedPrecondition(`the backup directory cannot be ${resolved}: give a new directory`);
  const parentStat = realDirectory(parentAsGiven, resolved);
  const parent = parentStat.real;
  const dir = path.join(parent, path.basename(resolved));
  const liveDataDir = realDirectory(dataDir, resolved).real;
  if (dir === liveDataDir || dir.startsWith(liveDataDir + path.sep)) {
    throw invalidArgument(
      `the backup directory ${requested} is inside the server's data dir ${dataDir}: a backup must be kept apart from what it ` +
        'backs up (a lost or restored data dir would take it along); give a directory outside it',
    );
  }
  const existing = unreachableAs(requested, dir, () => fs.lstatSync(dir, { throwIfNoEntry: false }));
  if (existing !== undefined) {
    if (existing.isSymbolicLink()) {
      throw failedPrecondition(`the backup directory ${requested} is a symbolic link: give the directory it points to, or a new one`);
    }
    if (!existing.isDirectory()) throw failedPrecondition(`the backup directory ${requested} exists and is not a directory: give a new directory`);
    const entries = unreachableAs(requested, dir, () => fs.readdirSync(dir));
    // A kill -9 mid-backup leaves its staging directory inside DIR, maybe with files already moved up beside it.
    const leftover = entries.find((name) => name.startsWith(`${path.basename(dir)}${STAGING_INFIX}`));
    if (leftover !== undefined && !entries.includes(DATA_DIR_MARKER)) {
      throw failedPrecondition(
        `the backup directory ${requested} holds what an interrupted backup left (${leftover}, and any files moved up beside it, ` +
          'without meshid-server.json): it is no backup; empty the directory and run the backup again',
      );
    }
    if (entries.length > 0) {
      throw failedPrecondition(
        `the backup directory ${requested} exists and is not empty (${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}): ` +
          'a backup is written into a new or empty directory, never over another backup or other files; give a new one, e.g. with the date in its name',
      );
    }
  }
  // The backup holds the CA keys: a directory another user owns (an empty one made in /tmp ahead of the operator), or
  // a parent others may write without the sticky bit, would let that user swap its files for keys of their own,
  // which a restore then takes for the trust domain's.
  assertSafeDirectory(dir, 'backup directory');
  return { dir, parent, exists: existing !== undefined, anchor: identityOf(existing ?? parentStat.stat) };
}

/** NAME_MAX (255) less the staging suffix data-dir-backup.ts appends (".incomplete-" and 12 hex digits). */
const MAX_NAME_BYTES = 255 - 24;

/** What data-dir-backup.ts puts between the backup directory's name and a random suffix to name its staging directory. */
export const STAGING_INFIX = '.incomplete-';


/** The real path of a directory the backup depends on, or a refusal naming it and the backup directory asked for. */
function realDirectory(dir: string, backupDir: string): { real: string; stat: fs.Stats } {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw failedPrecondition(
        `cannot write the backup to ${backupDir}: ${dir} does not exist; create it first (the backup directory itself is created, mode 0700)`,
      );
    }
    throw unreachable(err, `cannot write the backup to ${backupDir}`, dir) ?? err;
  }
  const stat = fs.statSync(real);
  if (!stat.isDirectory()) throw failedPrecondition(`cannot write the backup to ${backupDir}: ${dir} is not a directory`);
  return { real, stat };
}

/** Runs a lookup of the backup directory itself, turning what unreachable() words into its error. */
function unreachableAs<T>(backupDir: string, dir: string, lookup: () => T): T {
  try {
    return lookup();
  } catch (err) {
    throw unreachable(err, `cannot write the backup to ${backupDir}`, dir) ?? err;
  }
}

/**
 * A path the server cannot follow to `dir`, as what the operator changes: the path given, not the server (a bare
 * ELOOP or ENAMETOOLONG would surface as an internal error). `failing` says what could not be done, e.g. "cannot
 * write the backup to DIR" (restore-target.ts words its own). Undefined for anything else.
 */
export function unreachable(err: unknown, failing: string, dir: string): Error | undefined {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EACCES':
      return failedPrecondition(`${failing}: ${dir} cannot be reached (permission denied to this process's user)`);
    case 'ELOOP':
      return failedPrecondition(`${failing}: ${dir} cannot be followed (symbolic links in it loop, or nest too deep); give a path without them`);
    case 'ENAMETOOLONG':
      return invalidArgument(`${failing}: ${dir}, with its symbolic links followed, is longer than the system's limit on paths; give a shorter one`);
    default:
      return undefined;
  }
}
