import type Database from 'better-sqlite3';

/**
 * Makes `statement.get` try, right after each read it makes, a commit by `other` (another connection to the same file:
 * another process's, as far as SQLite's locks go), and tells `outcome` what each try came to: 'committed', or the
 * SQLite error code that refused it (SQLITE_BUSY: the statement's transaction held the write lock).
 */
export function commitBesideEachRead(statement: Database.Statement, other: Database.Database, outcome: (result: unknown) => void): void {
  const get = statement.get.bind(statement) as (...params: unknown[]) => unknown;
  statement.get = ((...params: unknown[]) => {
    const found = get(...params);
    try {
      other.exec("INSERT INTO datastore_info (key, value) VALUES ('written-meanwhile', 'x')");
      outcome('committed');
    } catch (err) {
      outcome((err as { code?: string }).code);
    }
    return found;
  }) as typeof statement.get;
}
