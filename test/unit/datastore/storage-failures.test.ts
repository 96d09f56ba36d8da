/**
 * A datastore that really fails (its size capped, its file opened read-only, a table gone), called through the one
 * unary handler: what the caller is told, and what the operator finds in the server log at its default level.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { createLogger } from '../../../src/common/log.js';
import { unary } from '../../../src/server/api/handler.js';
import { openSqliteDatastore, SqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { openSqliteFile } from '../../../src/server/datastore/sqlite-open.js';
import { storageError } from '../../../src/server/datastore/sqlite-errors.js';
import { LEVEL, parseLogLines, type LogRecord } from '../../support/log-lines.js';
import { tempDir } from './fixture.js';
import { teardown } from '../../support/teardown.js';
import { commitBesideEachRead } from '../../support/commit-beside-read.js';

const TOKEN = 'f3c1d2a4b5e6f7a8b9c0d1e2f3a4b5c6';

/** One call of a unary handler running `fn`, logged at the daemons' default level (info). */
async function call(fn: () => Promise<unknown>): Promise<{ error: ServiceError; lines: LogRecord[] }> {
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const handler = unary(log, 'CreateJoinToken', fn);
  const error = await new Promise<ServiceError>((resolve) => {
    const callback: sendUnaryData<unknown> = (err) => resolve(err as ServiceError);
    handler({ request: {} } as ServerUnaryCall<unknown, unknown>, callback);
  });
  assert.ok(error !== null, 'the call failed');
  return { error, lines: parseLogLines(raw.join('')) };
}

const newToken = (n: number) => ({ token: `${TOKEN}-${n}`, datacenter: 'east', selectors: [], expiresAt: 2_000_000_000_000, createdAt: 1 });

/** The error line of a server fault, holding SQLite's own words (`cause`) and never the join token. */
function assertLoggedWithCause(lines: LogRecord[], cause: RegExp): void {
  const line = lines.find((l) => l.level === LEVEL.error);
  assert.ok(line !== undefined, `no error line at the default level: ${JSON.stringify(lines)}`);
  assert.equal(line['rpc'], 'CreateJoinToken');
  assert.match(JSON.stringify(line['err']), cause, 'the cause is in the line');
  assert.doesNotMatch(JSON.stringify(lines), new RegExp(TOKEN), 'no join token in the log');
}

/** What no caller is told: SQLite's words, its table names, the datastore's path. */
function assertNoInternals(details: string, file: string): void {
  assert.doesNotMatch(details, /SQLITE|sqlite3|no such|constraint|readonly database|disk image|join_tokens/i);
  assert.ok(!details.includes(path.dirname(file)), details);
}

/** A fresh datastore in a temp dir, with the raw database under it for the test to break; closed and removed after. */
function openedDatastore(t: TestContext): { file: string; db: Database.Database; ds: SqliteDatastore } {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const file = path.join(dir, 'datastore.sqlite3');
  const clock = new FakeClock();
  const db = openSqliteFile(file, clock);
  const ds = new SqliteDatastore(db, clock);
  teardown(t).after(() => ds.close());
  return { file, db, ds };
}

test('a full datastore disk (a capped page count): RESOURCE_EXHAUSTED to the caller, the cause at error level in the log', async (t) => {
  const { db, ds } = openedDatastore(t);
  // The database may not grow by one page: the first write that needs one fails as on a full disk (SQLITE_FULL).
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let n = 0;
  const { error, lines } = await call(async () => {
    for (; n < 10_000; n++) await ds.createJoinToken(newToken(n));
    assert.fail('the capped datastore took 10,000 join tokens');
  });
  assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.details);
  assert.equal(error.details, 'the datastore disk is full');
  assertLoggedWithCause(lines, /database or disk is full/);
});

test('a full disk while an agent is written with its join token: the write fails whole, and the token is still there for the retry', async (t) => {
  const { db, ds } = openedDatastore(t);
  const token = `${TOKEN}-agent`;
  await ds.createJoinToken({ ...newToken(0), token });
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  // Selectors longer than a page: the agent's row needs pages the capped file cannot get, after the token's delete.
  const selectors = Array.from({ length: 40 }, (_, i) => ({ type: 'unix', value: `uid:${i}:${'x'.repeat(200)}` }));
  const spiffeId = 'spiffe://example.org/meshid/agent/east/a';
  const agent = { spiffeId, datacenter: 'east', selectors, certSerial: '01', certNotAfter: 2_000_000_000_000, attestedAt: 1, updatedAt: 1, banned: false };
  await assert.rejects(ds.createAgent(agent, { joinToken: token }), (err) => isMeshidError(err, 'resource_exhausted'));
  assert.equal(await ds.getAgent(spiffeId), undefined);
  assert.ok(await ds.findJoinToken(token), 'the token is not used up by the agent write that failed');
});

test("another process holding the datastore's write lock past the busy timeout: UNAVAILABLE (retry), and the retry once it lets go is written", async (t) => {
  const { file, db, ds } = openedDatastore(t);
  // What the 5 s busy timeout waits for, cut to none: the write fails with SQLITE_BUSY at once instead of after 5 s.
  db.pragma('busy_timeout = 0');
  // Another process on the file (an operator's sqlite3 shell, a backup tool) in a write transaction of its own.
  const other = new Database(file);
  teardown(t).after(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  const { error } = await call(() => ds.createJoinToken(newToken(0)));
  assert.equal(error.code, status.UNAVAILABLE, error.details);
  assert.equal(error.details, 'the datastore is locked by another process; retry shortly');
  assertNoInternals(error.details, file);
  other.exec('ROLLBACK');
  await ds.createJoinToken(newToken(0));
  assert.ok(await ds.findJoinToken(newToken(0).token), 'the retry is written');
});

test('another process holding the write lock, at the default log level: one warn line for many refused writes, another a minute on with the count, an info line when writes succeed again', async (t) => {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const file = path.join(dir, 'datastore.sqlite3');
  const clock = new FakeClock();
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const db = openSqliteFile(file, clock);
  const ds = new SqliteDatastore(db, clock, log);
  teardown(t).after(() => ds.close());
  db.pragma('busy_timeout = 0');
  const other = new Database(file);
  teardown(t).after(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  const lockLines = () => parseLogLines(raw.join('')).filter((l) => /datastore/.test(l.msg));
  const refuse = async (n: number) => {
    for (let i = 0; i < n; i++) {
      await assert.rejects(ds.createJoinToken(newToken(i)), (err) => isMeshidError(err, 'unavailable'));
      clock.advance(1000);
    }
  };

  await refuse(20);
  let lines = lockLines();
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0]!.level, LEVEL.warn);
  assert.match(lines[0]!.msg, /another process holds the datastore locked/);
  assert.equal(lines[0]!['file'], file);

  clock.advance(40_000); // the first refusal is now 60 s back
  await refuse(1);
  lines = lockLines();
  assert.equal(lines.length, 2, JSON.stringify(lines));
  assert.equal(lines[1]!.level, LEVEL.warn);
  assert.equal(lines[1]!['refusedSinceLast'], 20);
  assert.equal(lines[1]!['refused'], 21);
  assert.match(lines[1]!.msg, /still refused/);

  other.exec('ROLLBACK');
  await ds.createJoinToken(newToken(0));
  await ds.createJoinToken(newToken(1));
  lines = lockLines();
  assert.equal(lines.length, 3, JSON.stringify(lines));
  assert.ok(lines[2]!.level === LEVEL.info || lines[2]!.level === LEVEL.warn, JSON.stringify(lines[2]));
  assert.match(lines[2]!.msg, /writes succeed again/);
  assert.equal(lines[2]!['refused'], 21);
  assert.doesNotMatch(raw.join(''), new RegExp(TOKEN), 'no join token in the log');

  // A new lock is a new episode, logged from its first refused write.
  other.exec('BEGIN IMMEDIATE');
  await refuse(1);
  other.exec('ROLLBACK');
  lines = lockLines();
  assert.equal(lines.length, 4, JSON.stringify(lines));
  assert.equal(lines[3]!.level, LEVEL.warn);
  assert.doesNotMatch(lines[3]!.msg, /still/);
});

test('a write holds the write lock from its start: another process cannot commit between what the write read and what it writes, and the write goes through', async (t) => {
  const { file, ds } = openedDatastore(t);
  const other = new Database(file, { timeout: 0 });
  teardown(t).after(() => other.close());
  // Between the write's check for a duplicate token and its insert, another process tries a commit of its own. Had
  // the write only read so far (a deferred transaction), that commit would go in and the write's insert fail on the
  // snapshot it read (SQLITE_BUSY_SNAPSHOT, at once: no busy timeout waits for that).
  const exists = (Reflect.get(ds, 's') as Record<string, Database.Statement>)['joinTokenExists']!;
  let othersCommit: unknown = 'not tried';
  commitBesideEachRead(exists, other, (result) => (othersCommit = result));
  await ds.createJoinToken(newToken(0));
  assert.equal(othersCommit, 'SQLITE_BUSY', 'the other process waits for the write');
  assert.ok(await ds.findJoinToken(newToken(0).token), 'the write went through');
});

test('a datastore file opened read-only: UNAVAILABLE saying so, the cause at error level in the log', async (t) => {
  const { dir, cleanup } = tempDir();
  teardown(t).after(cleanup);
  const file = path.join(dir, 'datastore.sqlite3');
  const clock = new FakeClock();
  await (await openSqliteDatastore({ file, clock })).close();
  const ds = new SqliteDatastore(new Database(file, { readonly: true }), clock);
  teardown(t).after(() => ds.close());
  const { error, lines } = await call(() => ds.createJoinToken(newToken(0)));
  assert.equal(error.code, status.UNAVAILABLE, error.details);
  assert.match(error.details, /^the datastore cannot be written: its file or file system is read-only/);
  assertNoInternals(error.details, file);
  assertLoggedWithCause(lines, /readonly database/);
});

test('an unexpected datastore failure (a table gone): INTERNAL without SQLite words or table names, the cause at error level', async (t) => {
  const { file, db, ds } = openedDatastore(t);
  // A file edited by hand, or a schema this code does not expect: SQLite answers "no such table: join_tokens".
  db.exec('ALTER TABLE join_tokens RENAME TO join_tokens_moved');
  const { error, lines } = await call(() => ds.findJoinToken(TOKEN));
  assert.equal(error.code, status.INTERNAL, error.details);
  assert.match(error.details, /the server log has the cause/);
  assertNoInternals(error.details, file);
  assertLoggedWithCause(lines, /no such table: join_tokens/);
});

test("a constraint SQLite enforces that the server's checks missed: the refusal names no table or column", () => {
  const db = new Database(':memory:');
  try {
    db.exec('CREATE TABLE registration_entries (id TEXT PRIMARY KEY, hint TEXT CHECK (length(hint) < 4))');
    db.exec("INSERT INTO registration_entries VALUES ('a', '')");
    const raised = (sql: string): unknown => {
      try {
        db.exec(sql);
      } catch (err) {
        return err;
      }
      return assert.fail(`${sql} went through`);
    };
    const duplicate = storageError(raised("INSERT INTO registration_entries VALUES ('a', '')"));
    assert.equal(duplicate.code, 'already_exists');
    assertNoInternals(duplicate.message, '/nowhere/datastore.sqlite3');
    assert.doesNotMatch(duplicate.message, /registration_entries|\bid\b/);
    assert.match(String((duplicate.cause as Error).message), /UNIQUE constraint failed: registration_entries\.id/, 'the cause is kept');
    // A UNIQUE column that is not the key (registration_entries.identity_hash): the same refusal, already_exists.
    db.exec('CREATE TABLE identities (id TEXT PRIMARY KEY, identity_hash TEXT NOT NULL UNIQUE)');
    db.exec("INSERT INTO identities VALUES ('a', 'h')");
    const sameIdentity = storageError(raised("INSERT INTO identities VALUES ('b', 'h')"));
    assert.match(String((sameIdentity.cause as Error).message), /UNIQUE constraint failed: identities\.identity_hash/);
    assert.equal(sameIdentity.code, 'already_exists');
    assert.equal(sameIdentity.message, duplicate.message);
    const check = storageError(raised("INSERT INTO registration_entries VALUES ('b', 'longer')"));
    assert.equal(check.code, 'failed_precondition');
    assert.doesNotMatch(check.message, /length|hint|registration_entries|CHECK/);
  } finally {
    db.close();
  }
});
