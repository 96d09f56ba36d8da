import Database from 'better-sqlite3';
import { alreadyExists, failedPrecondition, internal, MeshidError, resourceExhausted, unavailable } from '../../common/errors.js';

/**
 * The one place where SQLite's errors become MeshidErrors. Expected conflicts are checked before writing, with
 * messages naming the conflicting record; this catches what slips through (another process writing the same file,
 * disk full, a damaged file) so no raw driver error reaches the API layer, which would turn it into gRPC UNKNOWN.
 */
export function storageError(err: unknown): MeshidError {
  if (err instanceof MeshidError) return err;
  if (err instanceof Database.SqliteError) {
    const code = err.code;
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return alreadyExists(`the datastore already holds this record (${err.message})`);
    }
    if (code.startsWith('SQLITE_CONSTRAINT')) return failedPrecondition(`the datastore refused the change: ${err.message}`, err);
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return unavailable('the datastore is locked by another process; retry shortly', err);
    }
    if (code === 'SQLITE_FULL') return resourceExhausted('the datastore disk is full');
    if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN')) {
      return unavailable(`the datastore cannot be written: ${err.message}`, err);
    }
    if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
      return internal(`the datastore file is damaged (${err.message}): stop the server and restore it from a backup`, err);
    }
  }
  return internal(`datastore operation failed: ${(err as Error)?.message ?? String(err)}`, err);
}
