import fs from 'node:fs';
import { failedPrecondition, isMeshidError, MeshidError } from './errors.js';

/** Errno and SQLite codes of a write that failed because of where it wrote, not of what it wrote. */
const STORAGE_CODES = /^(ENOSPC|EDQUOT|EROFS|EACCES|EPERM|EIO|SQLITE_FULL|SQLITE_PERM|SQLITE_READONLY\w*|SQLITE_CANTOPEN\w*|SQLITE_IOERR\w*)$/;

/**
 * Why writing into `dir` failed, in the words an operator acts on ("the disk is full", "the file system is
 * read-only", ...), or undefined when `err` is no storage failure (a bug, a damaged file: the caller reports those
 * as they are). Read from the error's code (errno, or SQLite's) where that says it; where it does not
 * (SQLITE_CANTOPEN, an I/O error), from the directory itself: whether it is writable, and statfs. Never throws.
 */
export function storageFailureCause(err: unknown, dir: string): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !STORAGE_CODES.test(code)) return undefined;
  if (code === 'EDQUOT') return 'the disk quota is exceeded';
  if (code === 'EROFS') return 'the file system is read-only';
  if (code === 'EACCES' || code === 'EPERM' || code === 'SQLITE_PERM') return describeAccess(dir) ?? 'permission denied';
  if (code === 'ENOSPC' || code === 'SQLITE_FULL') return describeSpace(dir) ?? 'the disk is full';
  return describeAccess(dir) ?? describeSpace(dir) ?? ((err as Error).message || code);
}

/** Whether `dir` can be written to, as a cause; undefined when it can (or cannot be asked). */
function describeAccess(dir: string): string | undefined {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return 'the file system is read-only';
    if (code === 'EACCES' || code === 'EPERM') return `${dir} is not writable by this user`;
    return undefined;
  }
}

/** No free blocks or no free inodes on the file system of `dir`, as a cause; undefined when neither is the case. */
function describeSpace(dir: string): string | undefined {
  let st: fs.StatsFs;
  try {
    st = fs.statfsSync(dir);
  } catch {
    return undefined;
  }
  // root may use the blocks reserved for it (bfree); other users only bavail.
  const free = process.geteuid?.() === 0 ? st.bfree : st.bavail;
  if (free === 0) return 'the disk is full';
  // `files` is 0 on file systems without a fixed inode count.
  if (st.files > 0 && st.ffree === 0) return 'the disk has no free inodes left (too many files)';
  return undefined;
}

/**
 * A failed write of `what` into `dir` as an error the caller can act on: a full disk (or quota) is
 * resource_exhausted, a file system that refuses writes unavailable, both naming the directory and the cause, and
 * marked serverFault. Anything else is returned as it is.
 */
export function storageWriteError(err: unknown, what: string, dir: string): unknown {
  const cause = storageFailureCause(err, dir);
  if (cause === undefined) return err;
  const code = (err as { code?: unknown }).code;
  const message = `cannot write ${what} to ${dir}: ${cause}`;
  // The server's own disk, whatever the caller is told: logged at error with the cause (api/handler.ts).
  const full = code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
  return new MeshidError(full ? 'resource_exhausted' : 'unavailable', message, { cause: err, serverFault: true });
}

/**
 * A failure to set up `dir` (at start-up) as failed_precondition, worded by `message` from the cause, when it is a
 * storage failure; anything else, MeshidErrors included (they say what to do already), is returned as it is.
 */
export function storageSetupError(err: unknown, dir: string, message: (cause: string) => string): unknown {
  const cause = isMeshidError(err) ? undefined : storageFailureCause(err, dir);
  return cause === undefined ? err : failedPrecondition(message(cause), err);
}
