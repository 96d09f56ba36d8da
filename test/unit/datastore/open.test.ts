import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { entryIdentityHash } from '../../../src/server/datastore/entry-identity.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, SCHEMA_MIGRATIONS_DDL } from '../../../src/server/datastore/migrations.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { openSqliteFile } from '../../../src/server/datastore/sqlite-open.js';
import { commitBesideEachRead } from '../../support/commit-beside-read.js';
import { entry, sels, tempDir } from './fixture.js';

/** Every byte of the file and its WAL/SHM companions (absent ones as null), to prove a refused open wrote nothing. */
function snapshot(file: string): Array<Buffer | null> {
  return [file, `${file}-wal`, `${file}-shm`, `${file}-journal`].map((f) => (fs.existsSync(f) ? fs.readFileSync(f) : null));
}

/** An open of `file` is refused (failed_precondition), its message passing `check`, and leaves the file and its companions as they were. */
async function assertRefusedUnchanged(file: string, check: (message: string) => void, clock = new FakeClock()): Promise<void> {
  const before = snapshot(file);
  await assert.rejects(openSqliteDatastore({ file, clock }), (err) => {
    assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
    check(err.message);
    return true;
  });
  assert.deepEqual(snapshot(file), before);
}

function rawQuery<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

test('a new datastore file is 0600, in WAL mode, at the latest schema version, and reported as no upgrade', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    // A new datastore is created at the latest schema, not upgraded to it: the start logs no upgrade from version 0.
    const upgrades: unknown[] = [];
    const ds = await openSqliteDatastore({ file, clock: new FakeClock(), onSchemaUpgrade: (u) => upgrades.push(u) });
    assert.deepEqual(upgrades, []);
    await ds.createEntries([entry()]);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      if (fs.existsSync(f)) assert.equal(fs.statSync(f).mode & 0o777, 0o600, `${path.basename(f)} is 0600`);
    }
    await ds.close();
    assert.deepEqual(rawQuery(file, 'PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
    const versions = rawQuery<{ version: number }>(file, 'SELECT version FROM schema_migrations ORDER BY version').map((r) => r.version);
    assert.deepEqual(versions, MIGRATIONS.map((m) => m.version));
    assert.equal(versions.at(-1), LATEST_SCHEMA_VERSION);
  } finally {
    cleanup();
  }
});

test('the connection waits for another process\'s lock, enforces foreign keys and syncs every commit (durability no test can crash for)', () => {
  const { dir, cleanup } = tempDir();
  const db = openSqliteFile(path.join(dir, 'datastore.sqlite3'), new FakeClock());
  try {
    // A restore or a second opener holding the file for a moment is waited for, not answered SQLITE_BUSY at once.
    assert.equal(db.pragma('busy_timeout', { simple: true }), 5000);
    assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
    // FULL (2): a consumed join token or a ban must survive a power loss, not only a kill -9 (sqlite-open.ts).
    assert.equal(db.pragma('synchronous', { simple: true }), 2);
  } finally {
    db.close();
    cleanup();
  }
});

test('an existing datastore file with loose permissions is tightened to 0600 on open', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    await (await openSqliteDatastore({ file, clock: new FakeClock() })).close();
    fs.chmodSync(file, 0o644);
    await (await openSqliteDatastore({ file, clock: new FakeClock() })).close();
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  } finally {
    cleanup();
  }
});

test('reopening keeps the data and runs no migration twice', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    const clock = new FakeClock();
    const a = await openSqliteDatastore({ file, clock });
    const [r] = await a.createEntries([entry()]);
    await a.close();
    for (let i = 0; i < 3; i++) {
      clock.advance(1000);
      const b = await openSqliteDatastore({ file, clock });
      assert.deepEqual(await b.getEntry(r!.entry!.id), r!.entry);
      assert.equal(await b.currentRevision(), 1);
      await b.close();
    }
    const rows = rawQuery<{ version: number; applied_at: number }>(file, 'SELECT version, applied_at FROM schema_migrations');
    assert.equal(rows.length, LATEST_SCHEMA_VERSION);
    assert.equal(rows[0]!.applied_at, new FakeClock().now(), 'applied once, at the first open');
  } finally {
    cleanup();
  }
});

test('a schema version 1 datastore with entries and tombstones is upgraded in place: data kept, tombstones prunable', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    const t0 = Date.UTC(2025, 11, 1);
    // What meshid-server with schema 1 left behind: one live entry (revision 1), two deletions (revisions 2 and 3).
    const v1 = new Database(file);
    v1.pragma('journal_mode = WAL');
    v1.exec(SCHEMA_MIGRATIONS_DDL);
    for (const statement of MIGRATIONS.find((m) => m.version === 1)!.statements) v1.exec(statement);
    v1.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, ?, ?)').run(MIGRATIONS[0]!.name, t0);
    const live = entry({ selectors: sels('unix:uid:1000') });
    v1.prepare(
      'INSERT INTO registration_entries (id, spiffe_id, parent_id, identity_hash, selectors, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, ' +
        'dns_names, hint, federates_with, admin, downstream, revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ).run('e-00000000000000aa', live.spiffeId, live.parentId, entryIdentityHash(live), JSON.stringify(live.selectors), 3600, 300, '[]', '', '[]', 0, 0, 1, t0, t0);
    v1.prepare("INSERT INTO entry_selectors (entry_id, type, value) VALUES ('e-00000000000000aa', 'unix', 'uid:1000')").run();
    v1.prepare('INSERT INTO entry_tombstones (entry_id, revision, deleted_at) VALUES (?, ?, ?)').run('e-00000000000000bb', 2, t0);
    v1.prepare('INSERT INTO entry_tombstones (entry_id, revision, deleted_at) VALUES (?, ?, ?)').run('e-00000000000000cc', 3, t0 + 48 * 3_600_000);
    v1.prepare("UPDATE revisions SET value = 3 WHERE name = 'changes'").run();
    v1.prepare(
      'INSERT INTO attested_agents (spiffe_id, datacenter, selectors, cert_serial, cert_not_after, previous_cert_serial, attested_at, updated_at, banned) ' +
        "VALUES ('spiffe://example.org/meshid/agent/east/a', 'east', '[]', '0a', ?, NULL, ?, ?, 0)",
    ).run(t0 + 3_600_000, t0, t0);
    v1.close();

    const clock = new FakeClock(t0 + 49 * 3_600_000);
    const ds = await openSqliteDatastore({ file, clock });
    try {
      assert.deepEqual(
        rawQuery<{ version: number; applied_at: number }>(file, 'SELECT version, applied_at FROM schema_migrations ORDER BY version'),
        MIGRATIONS.map((m) => ({ version: m.version, applied_at: m.version === 1 ? t0 : clock.now() })),
      );
      assert.equal(await ds.currentRevision(), 3);
      // An agent attested before the server recorded who signed its SVID: kept, signer unknown.
      const agent = await ds.getAgent('spiffe://example.org/meshid/agent/east/a');
      assert.equal(agent?.certSerial, '0a');
      assert.equal(agent?.certIssuerId, undefined);
      // Nor has it reported its version yet.
      assert.equal(agent?.agentVersion, undefined);
      assert.deepEqual((await ds.listAllEntries()).map((e) => [e.id, e.spiffeId, e.revision]), [['e-00000000000000aa', live.spiffeId, 1]]);
      // Nothing pruned yet: a reader at revision 1 still gets the deletions as a delta.
      assert.deepEqual(await ds.listEntryChangesSince(1), { upserts: [], deletedIds: ['e-00000000000000bb', 'e-00000000000000cc'], revision: 3 });
      assert.equal(await ds.pruneEntryTombstones(clock.now() - 24 * 3_600_000), 1);
      assert.deepEqual(rawQuery(file, 'SELECT entry_id FROM entry_tombstones'), [{ entry_id: 'e-00000000000000cc' }]);
      assert.deepEqual(rawQuery(file, "SELECT value FROM revisions WHERE name = 'entry_tombstones_pruned'"), [{ value: 2 }]);
      // The age query has its index.
      const plan = rawQuery<{ detail: string }>(file, 'EXPLAIN QUERY PLAN DELETE FROM entry_tombstones WHERE deleted_at < 0');
      assert.ok(plan.some((r) => r.detail.includes('entry_tombstones_deleted_at')), JSON.stringify(plan));
    } finally {
      await ds.close();
    }
  } finally {
    cleanup();
  }
});

test('an SQLite database of another application is refused with a clear error and left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'other.db');
    const db = new Database(file);
    db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice')");
    db.close();
    await assertRefusedUnchanged(file, (message) => {
      assert.match(message, new RegExp(`${file.replace(/[.]/g, '\\.')} is not a meshid datastore`));
      assert.match(message, /users/);
    });
  } finally {
    cleanup();
  }
});

test('a database whose datastore_info table names another application, or a meshid datastore without its schema_migrations table, is refused as such and left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    // Another program's database that happens to keep a table of the same name.
    const other = path.join(dir, 'other.db');
    const db = new Database(other);
    db.exec("CREATE TABLE datastore_info (key TEXT PRIMARY KEY, value TEXT); INSERT INTO datastore_info VALUES ('application', 'inventory')");
    db.close();
    await assertRefusedUnchanged(other, (message) => assert.match(message, /is not a meshid datastore: its datastore_info table names application "inventory"/));
    // meshid's own, with the table that records its schema version gone: damaged, not one that changed under the open.
    const damaged = path.join(dir, 'datastore.sqlite3');
    await (await openSqliteDatastore({ file: damaged, clock: new FakeClock() })).close();
    const raw = new Database(damaged);
    raw.exec('DROP TABLE schema_migrations');
    raw.close();
    await assertRefusedUnchanged(damaged, (message) =>
      assert.equal(message, `the datastore ${damaged} has no schema_migrations table: it is damaged; restore it from a backup`),
    );
  } finally {
    cleanup();
  }
});

test('an open holds the write lock while it checks and migrates the schema: another process cannot commit in between; one that dropped the schema table before is told apart from a damaged file', async () => {
  const { dir, cleanup } = tempDir();
  const file = path.join(dir, 'datastore.sqlite3');
  const prepare = Database.prototype.prepare;
  const pragma = Database.prototype.pragma;
  try {
    await (await openSqliteDatastore({ file, clock: new FakeClock() })).close();
    const other = new Database(file, { timeout: 0 });
    try {
      // Right after the migration's first read under its transaction: another process tries a commit of its own.
      let othersCommit: unknown = 'not tried';
      Database.prototype.prepare = function (this: Database.Database, source: string) {
        const statement = prepare.call(this, source);
        if (this.name === file && source.includes("AND name = 'schema_migrations'")) commitBesideEachRead(statement, other, (result) => (othersCommit = result));
        return statement;
      } as typeof prepare;
      await (await openSqliteDatastore({ file, clock: new FakeClock() })).close();
      Database.prototype.prepare = prepare;
      assert.equal(othersCommit, 'SQLITE_BUSY', 'the other process waits for the open');
      // Between the open's first look (a meshid datastore) and its migration: another process drops the table of
      // schema versions. Not a damaged file, nor one to create a schema in: the open is refused, to be tried again.
      let dropped = false;
      Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
        if (!dropped && source === 'synchronous = FULL' && this.name === file) {
          dropped = true;
          other.exec('DROP TABLE schema_migrations');
        }
        return pragma.call(this, source, options);
      } as typeof pragma;
      await assert.rejects(openSqliteDatastore({ file, clock: new FakeClock() }), (err) => {
        assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
        assert.equal(err.message, `the datastore ${file} changed while it was being opened; try again`);
        return true;
      });
      assert.ok(dropped);
    } finally {
      other.close();
    }
  } finally {
    Database.prototype.prepare = prepare;
    Database.prototype.pragma = pragma;
    cleanup();
  }
});

test('an SQLite database in WAL mode of another application is refused and its main file left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'other-wal.db');
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec("CREATE TABLE things (x TEXT); INSERT INTO things VALUES ('y')");
    db.close();
    const before = fs.readFileSync(file);
    await assert.rejects(openSqliteDatastore({ file, clock: new FakeClock() }), /is not a meshid datastore/);
    assert.deepEqual(fs.readFileSync(file), before);
  } finally {
    cleanup();
  }
});

test('a garbage file is refused with a clear error and left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    for (const [name, content] of [
      ['random.bin', randomBytes(8192)],
      ['text.conf', Buffer.from('trust_domain = "example.org"\n')],
      ['almost.db', Buffer.concat([Buffer.from('SQLite format 3\0'), randomBytes(4080)])],
    ] as const) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content, { mode: 0o644 });
      await assert.rejects(openSqliteDatastore({ file, clock: new FakeClock() }), (err) => {
        assert.ok(isMeshidError(err, 'failed_precondition'), String(err));
        assert.match(err.message, name === 'almost.db' ? /not a meshid datastore|damaged/ : /is not a meshid datastore: it is not an SQLite database/);
        return true;
      });
      assert.deepEqual(fs.readFileSync(file), content, `${name} unchanged`);
      assert.equal(fs.statSync(file).mode & 0o777, 0o644, `${name} permissions unchanged`);
      assert.deepEqual(snapshot(file).slice(1), [null, null, null], `no companion files next to ${name}`);
    }
  } finally {
    cleanup();
  }
});

test('a directory in place of the file is refused', async () => {
  const { dir, cleanup } = tempDir();
  try {
    await assert.rejects(openSqliteDatastore({ file: dir, clock: new FakeClock() }), (err) => isMeshidError(err, 'failed_precondition') && /not a regular file/.test(err.message));
  } finally {
    cleanup();
  }
});

test('a datastore with a newer schema version is refused, names both versions, and is left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    const clock = new FakeClock();
    const ds = await openSqliteDatastore({ file, clock });
    await ds.createEntries([entry()]);
    await ds.close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(LATEST_SCHEMA_VERSION + 1, 'from the future', 0);
    db.close();
    await assertRefusedUnchanged(
      file,
      (message) => assert.match(message, new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1}, newer than this meshid-server understands \\(${LATEST_SCHEMA_VERSION}\\)`)),
      clock,
    );
  } finally {
    cleanup();
  }
});

test('an empty file is treated as a new datastore', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    fs.writeFileSync(file, '');
    const ds = await openSqliteDatastore({ file, clock: new FakeClock() });
    assert.equal(await ds.countEntries(), 0);
    await ds.close();
  } finally {
    cleanup();
  }
});

test('after close every call fails with unavailable, and close is idempotent', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const ds = await openSqliteDatastore({ file: path.join(dir, 'd.sqlite3'), clock: new FakeClock() });
    await ds.close();
    await ds.close();
    await assert.rejects(ds.countEntries(), (err) => isMeshidError(err, 'unavailable'));
    await assert.rejects(ds.createEntries([entry()]), (err) => isMeshidError(err, 'unavailable'));
  } finally {
    cleanup();
  }
});
