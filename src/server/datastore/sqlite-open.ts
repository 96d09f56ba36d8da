import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Clock } from '../../common/clock.js';
import { failedPrecondition, MeshidError } from '../../common/errors.js';
import { storageFailureCause } from '../../common/storage-failure.js';
import { INFO_APPLICATION, INFO_TABLE, LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_DDL } from './migrations.js';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** How long a statement waits for another connection's lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;
/**
 * What the -wal file is cut back to once a checkpoint has emptied it. Without a limit SQLite keeps the file at the
 * largest size it ever reached (a bulk entry import, a mass rotation) and only reuses it. Twice what the default
 * auto-checkpoint (1,000 pages of 4 KiB) lets it grow to in steady use, so ordinary writes never pay for a truncation.
 */
export const WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024;

/** The schema versions an existing datastore was migrated between when it was opened. */
export interface SchemaUpgrade {
  readonly from: number;
  readonly to: number;
}

/**
 * Opens (creating if absent) the SQLite file of a meshid datastore and brings its schema up to date; `onUpgrade` hears
 * of a datastore an older version wrote that was migrated (not of a new one).
 *
 * Nothing is written until the file is known to be empty or meshid's own: a garbage file, someone else's SQLite
 * database, or a meshid database with a newer schema is refused with a MeshidError(failed_precondition) and left
 * byte-for-byte as it was.
 */
export function openSqliteFile(file: string, clock: Clock, onUpgrade?: (upgrade: SchemaUpgrade) => void): Database.Database {
  checkFile(file);
  let db: Database.Database;
  try {
    db = new Database(file, { fileMustExist: true });
  } catch (err) {
    throw openFailure(file, err);
  }
  try {
    // Connection settings only; none of these writes to the file.
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.pragma('foreign_keys = ON');
    const fresh = identify(db, file);
    // WAL: readers never block the writer, and a commit is one append (crash-safe at any byte).
    // synchronous=FULL: in WAL mode NORMAL already survives kill -9, but a power loss or kernel crash may drop the
    // last commits. A consumed join token coming back, a ban or a CA journal switch undone while its certificates are
    // in circulation are worse than one fsync per transaction; entry batches keep that cost per entry small.
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (String(mode).toLowerCase() !== 'wal') throw failedPrecondition(`cannot switch the datastore ${file} to WAL mode (got ${String(mode)})`);
    db.pragma('synchronous = FULL');
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    restrictMode(file);
    const upgrade = migrate(db, file, fresh, clock);
    if (upgrade !== undefined) onUpgrade?.(upgrade);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof MeshidError) throw err;
    throw openFailure(file, err);
  }
}

/** SQLite's own words ("unable to open database file") do not say that the disk is full or read-only; this does. */
function openFailure(file: string, err: unknown): MeshidError {
  const cause = storageFailureCause(err, path.dirname(file)) ?? (err as Error).message;
  return failedPrecondition(`cannot open the datastore ${file}: ${cause}`, err);
}

/** Creates the file 0600 if absent; refuses anything that is not a regular file starting with the SQLite header. */
function checkFile(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw failedPrecondition(`cannot open the datastore ${file}: ${(err as Error).message}`, err);
    try {
      // Created here, not by SQLite, so it is 0600 from its first byte; SQLite gives -wal and -shm the same mode.
      fs.closeSync(fs.openSync(file, 'wx', 0o600));
    } catch (createErr) {
      if ((createErr as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw failedPrecondition(`cannot create the datastore ${file}: ${(createErr as Error).message}`, createErr);
      }
    }
    return;
  }
  if (!st.isFile()) throw notMeshid(file, 'it is not a regular file');
  if (st.size === 0) return; // An empty file is an empty SQLite database.
  const head = Buffer.alloc(SQLITE_MAGIC.length);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (!head.equals(SQLITE_MAGIC)) throw notMeshid(file, 'it is not an SQLite database');
}

function notMeshid(file: string, why: string): MeshidError {
  return failedPrecondition(`${file} is not a meshid datastore: ${why}. Point the server at another data dir or file`);
}

/** Returns true for an empty database; throws unless the database is meshid's with a schema this code knows. */
function identify(db: Database.Database, file: string): boolean {
  let tables: string[];
  try {
    tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>).map(
      (r) => r.name,
    );
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code === 'SQLITE_NOTADB') throw notMeshid(file, 'it is not an SQLite database');
    if (code.startsWith('SQLITE_CORRUPT')) throw failedPrecondition(`the datastore ${file} is damaged (${(err as Error).message}): restore it from a backup`, err);
    throw err;
  }
  if (tables.length === 0) return true;
  if (!tables.includes(INFO_TABLE)) {
    const shown = tables.slice(0, 5).join(', ') + (tables.length > 5 ? ', …' : '');
    throw notMeshid(file, `it is an SQLite database of something else (tables: ${shown})`);
  }
  const app = db.prepare(`SELECT value FROM ${INFO_TABLE} WHERE key = 'application'`).get() as { value: string } | undefined;
  if (app?.value !== INFO_APPLICATION) throw notMeshid(file, `its ${INFO_TABLE} table names application "${app?.value ?? ''}"`);
  if (!tables.includes('schema_migrations')) throw failedPrecondition(`the datastore ${file} has no schema_migrations table: it is damaged; restore it from a backup`);
  checkVersion(file, schemaVersion(db));
  return false;
}

function schemaVersion(db: Database.Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return row.v ?? 0;
}

function checkVersion(file: string, version: number): void {
  if (version > LATEST_SCHEMA_VERSION) {
    throw failedPrecondition(
      `the datastore ${file} has schema version ${version}, newer than this meshid-server understands (${LATEST_SCHEMA_VERSION}): ` +
        'run the meshid-server version that wrote it (or newer), or restore a backup made by this version',
    );
  }
}

/**
 * Applies every pending migration in ONE immediate transaction: the schema ends up fully upgraded or untouched.
 * Returns the versions an existing schema moved between; undefined for a new datastore or one already up to date.
 */
function migrate(db: Database.Database, file: string, fresh: boolean, clock: Clock): SchemaUpgrade | undefined {
  return db.transaction((): SchemaUpgrade | undefined => {
    // Re-read under the write lock: another process may have created or migrated the file since identify().
    const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get() !== undefined;
    if (!hasTable) {
      if (!fresh) throw failedPrecondition(`the datastore ${file} changed while it was being opened; try again`);
      db.exec(SCHEMA_MIGRATIONS_DDL);
    }
    const current = schemaVersion(db);
    checkVersion(file, current);
    const insert = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      try {
        for (const statement of m.statements) db.exec(statement);
      } catch (err) {
        // Thrown out of the transaction, which rolls every migration of this start back: say so, as the operator's
        // next question is whether the data dir is still the older version's.
        const cause = storageFailureCause(err, path.dirname(file)) ?? (err as Error).message;
        const what = current === 0 ? `create the schema of the datastore ${file}` : `upgrade the datastore ${file} from schema version ${current} to ${LATEST_SCHEMA_VERSION}`;
        throw failedPrecondition(
          `cannot ${what}: migration ${m.version} (${m.name}) failed: ${cause}. ` +
            `Nothing was changed${current === 0 ? '' : `: it is still at version ${current}`}, and the next start tries again`,
          err,
        );
      }
      insert.run(m.version, m.name, clock.now());
    }
    return current === 0 || current === LATEST_SCHEMA_VERSION ? undefined : { from: current, to: LATEST_SCHEMA_VERSION };
  }).immediate();
}

/** The datastore holds CA journal rows and bundles: owner-only, also for files made by an older version or by hand. */
function restrictMode(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
