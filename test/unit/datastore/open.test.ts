import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { LATEST_SCHEMA_VERSION } from '../../../src/server/datastore/migrations.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { entry, tempDir } from './fixture.js';

/** Every byte of the file and its WAL/SHM companions (absent ones as null), to prove a refused open wrote nothing. */
function snapshot(file: string): Array<Buffer | null> {
  return [file, `${file}-wal`, `${file}-shm`, `${file}-journal`].map((f) => (fs.existsSync(f) ? fs.readFileSync(f) : null));
}

function rawQuery<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

test('a new datastore file is 0600, in WAL mode, at the latest schema version', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'datastore.sqlite3');
    const ds = await openSqliteDatastore({ file, clock: new FakeClock() });
    await ds.createEntries([entry()]);
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      if (fs.existsSync(f)) assert.equal(fs.statSync(f).mode & 0o777, 0o600, `${path.basename(f)} is 0600`);
    }
    await ds.close();
    assert.deepEqual(rawQuery(file, 'PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
    assert.deepEqual(rawQuery<{ version: number }>(file, 'SELECT version FROM schema_migrations ORDER BY version').map((r) => r.version), [LATEST_SCHEMA_VERSION]);
  } finally {
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

test('an SQLite database of another application is refused with a clear error and left unchanged', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const file = path.join(dir, 'other.db');
    const db = new Database(file);
    db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice')");
    db.close();
    const before = snapshot(file);
    await assert.rejects(openSqliteDatastore({ file, clock: new FakeClock() }), (err) => {
      assert.ok(isMeshidError(err, 'failed_precondition'));
      assert.match(err.message, new RegExp(`${file.replace(/[.]/g, '\\.')} is not a meshid datastore`));
      assert.match(err.message, /users/);
      return true;
    });
    assert.deepEqual(snapshot(file), before);
  } finally {
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
    const before = snapshot(file);
    await assert.rejects(openSqliteDatastore({ file, clock }), (err) => {
      assert.ok(isMeshidError(err, 'failed_precondition'));
      assert.match(err.message, new RegExp(`schema version ${LATEST_SCHEMA_VERSION + 1}, newer than this meshid-server understands \\(${LATEST_SCHEMA_VERSION}\\)`));
      return true;
    });
    assert.deepEqual(snapshot(file), before);
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
