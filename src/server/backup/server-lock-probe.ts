import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/** The lock a server holds in its data dir (data-dir.ts), and a restore in its staging directory. */
export const SERVER_LOCK_FILE = 'server.lock';

/** Throws `refusal(lockFile)` when a process holds the lock in `dir` (lockHeld). */
export function refuseIfServerRuns(dir: string, refusal: (lockFile: string) => Error): void {
  if (lockHeld(dir)) throw refusal(path.join(dir, SERVER_LOCK_FILE));
}

/**
 * Whether a process holds the lock in `dir` (acquireDataDirLock: SQLite's exclusive lock on server.lock). Only reads:
 * a directory that is about to be refused, or another one's backup, is left as it was; no lock file is created where
 * there is none (then no server ever ran there). A held exclusive lock refuses even the shared lock a read takes,
 * which is the answer.
 */
export function lockHeld(dir: string): boolean {
  const lockFile = path.join(dir, SERVER_LOCK_FILE);
  if (!fs.existsSync(lockFile)) return false;
  let db: Database.Database | undefined;
  try {
    db = new Database(lockFile, { readonly: true, fileMustExist: true, timeout: 0 });
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    return false;
  } catch (err) {
    // Not an SQLite file, say: no lock of a server's, so nothing holds it.
    return (err as { code?: string }).code === 'SQLITE_BUSY';
  } finally {
    db?.close();
  }
}
