import Database from 'better-sqlite3';
import { failedPrecondition, MeshidError } from '../../common/errors.js';

/**
 * The one place where SQLite's errors become MeshidErrors. Expected conflicts are checked before writing, with
 * messages naming the conflicting record; this catches what slips through (another process writing the same file,
 * disk full, a damaged file) so no raw driver error reaches the API layer, which would turn it into gRPC UNKNOWN.
 *
 * The caller (an agent, an admin CLI user) gets a message that says what to do, never SQLite's own text: that names
 * tables, columns and SQL, and the generic case can be anything. SQLite's error travels as the cause, which the
 * server logs (api/handler.ts); failures of the server's own disk or file are marked serverFault so that line is at
 * error level.
 *
 * A full disk is RESOURCE_EXHAUSTED, not UNAVAILABLE: the agent retries both Attest answers with backoff
 * (agent/client/server-connection.ts ATTEST_RETRYABLE), but takes UNAVAILABLE elsewhere for "cannot reach the server"
 * (and may probe its trust bundle or report an outage), which would send an operator after the network while the
 * server, reached, is out of disk. Without retry pushback it is never read as a budget refusal (budget-refusal.ts).
 */
export function storageError(err: unknown): MeshidError {
  if (err instanceof MeshidError) return err;
  if (err instanceof Database.SqliteError) {
    const code = err.code;
    const fault = (errorCode: MeshidError['code'], message: string): MeshidError =>
      new MeshidError(errorCode, message, { cause: err, serverFault: true });
    if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return new MeshidError('already_exists', 'the datastore already holds this record; list the records again and retry', { cause: err });
    }
    if (code.startsWith('SQLITE_CONSTRAINT')) {
      return new MeshidError('failed_precondition', 'the datastore refused the change as conflicting with a record it holds; read the records again and retry', { cause: err });
    }
    if (isLockedOut(err)) {
      return new MeshidError('unavailable', 'the datastore is locked by another process; retry shortly', { cause: err });
    }
    if (code === 'SQLITE_FULL') return fault('resource_exhausted', 'the datastore disk is full');
    if (code.startsWith('SQLITE_READONLY')) {
      return fault('unavailable', 'the datastore cannot be written: its file or file system is read-only; the server log has the cause');
    }
    if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN')) {
      return fault('unavailable', 'the datastore cannot read or write its file (an I/O error); the server log has the cause');
    }
    if (isDamage(err)) {
      return fault('internal', 'the datastore file is damaged: stop the server and restore it from a backup');
    }
  }
  return new MeshidError('internal', 'the datastore operation failed unexpectedly; the server log has the cause', { cause: err });
}

/** Whether `err` is SQLite's refusal of a statement because another connection held the lock past the busy timeout. */
export function isLockedOut(err: unknown): boolean {
  if (!(err instanceof Database.SqliteError)) return false;
  return err.code.startsWith('SQLITE_BUSY') || err.code.startsWith('SQLITE_LOCKED');
}

const isDamage = (err: { code: string }): boolean => err.code.startsWith('SQLITE_CORRUPT') || err.code === 'SQLITE_NOTADB';

/** Whether `err` (from storageError, or SQLite's own) is the datastore file found damaged. */
export function isDamagedDatastore(err: unknown): boolean {
  const sqlite = err instanceof MeshidError ? err.cause : err;
  return sqlite instanceof Database.SqliteError && isDamage(sqlite);
}

/**
 * The datastore found damaged during a start, past the checks of opening it (the entry load reads pages those do not):
 * named, as the open-time check names it, with the way out. Nothing runs to be stopped, and a restore refuses a data
 * dir that is not empty, so the damaged one goes aside first (it holds the CA keys).
 */
export function damagedAtStart(err: unknown, file: string, dataDir: string): MeshidError {
  const sqlite = (err instanceof MeshidError ? err.cause : err) as Error;
  return failedPrecondition(
    `the datastore ${file} is damaged (${sqlite.message}): move ${dataDir} aside and restore a backup into it with \`meshid-server restore --from <backup dir> --data-dir ${dataDir}\``,
    err,
  );
}
