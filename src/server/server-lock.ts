import Database from 'better-sqlite3';
import { failedPrecondition } from '../common/errors.js';

/**
 * One server per data dir: a second one on the same files would rotate the CA on its own, never hear the first's
 * changes, and delete key files the first had not committed yet. The lock is SQLite's own exclusive lock (POSIX
 * record locks) on a small file in the data dir, held for the process's life: the kernel drops it when the process
 * dies, however it dies, and it holds between containers that share the volume on one host, where pids say nothing.
 * Returns the release function.
 */
export function acquireServerLock(file: string): () => void {
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    // A write takes the lock; in exclusive locking mode it is kept after the commit, until the connection closes.
    db.exec('CREATE TABLE IF NOT EXISTS lock (held INTEGER)');
    db.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw failedPrecondition(`the data dir is in use by another meshid-server (it holds ${file}); stop it or use another --data-dir`);
    }
    throw err;
  }
  return () => db.close();
}
