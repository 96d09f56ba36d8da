/**
 * The backup writer on a real datastore, key store and CA manager (FakeClock behind real time): CA changes started
 * while a backup runs wait for its turn, so the keys it holds are those its snapshot's journal names, and the
 * snapshot copies a large datastore a step per event-loop turn, taking in what is committed meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FakeClock } from '../../../src/common/clock.js';
import { openDataDir } from '../../../src/server/data-dir.js';
import type { NewEntry } from '../../../src/server/datastore/datastore.js';
import type { SqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { openSqliteDatastore } from '../../../src/server/datastore/sqlite-datastore.js';
import { checkBackupTarget } from '../../../src/server/backup/backup-target.js';
import { writeBackup } from '../../../src/server/backup/data-dir-backup.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

/** One turn of the event loop: what a CA change not made to wait would have finished in (it does no I/O of its own). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const entry = (i: number): NewEntry => ({
  spiffeId: `spiffe://example.org/workload/${i}`,
  parentId: 'spiffe://example.org/host',
  selectors: [{ type: 'unix', value: `uid:${i}` }],
  x509SvidTtlSeconds: 0,
  jwtSvidTtlSeconds: 0,
  dnsNames: [`w${i}.${'x'.repeat(200)}.example.org`],
  hint: '',
  federatesWith: [],
  admin: false,
  downstream: false,
});

test('a new root and a revoke sent while a backup runs (from inside its snapshot, at its start and end) wait for it: the backup holds every key its journal names and restores', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-turn-');
  t.after(cleanup);
  const dataDir = path.join(dir, 'data');
  openDataDir(dataDir, 'example.org');
  // Behind real time: OpenSSL judges the CA certificates by the real clock.
  const clock = new FakeClock(Date.now() - 3_600_000);
  const live = await openTestCa(dataDir, {}, clock);
  t.after(() => live.close());
  const { id: oldRoot, keyId: oldRootKey } = live.ca.listAuthorities().find((a) => a.kind === 'root' && a.state === 'active')!;
  await live.ca.taint(oldRoot);

  // A rotate-root sent as the snapshot starts would write its key and commit its row into what is being copied; a revoke
  // sent as it ends would take out a key the snapshot's journal still names, before the keys are copied.
  const racing: Array<Promise<unknown>> = [];
  const snapshot = {
    async snapshotTo(file: string, signal?: AbortSignal): Promise<void> {
      racing.push(live.ca.rotateRoot());
      await Promise.race([racing[0], nextTurn()]);
      await (live.ds as SqliteDatastore).snapshotTo(file, signal);
      racing.push(live.ca.revoke(oldRoot));
      await Promise.race([racing[1], nextTurn()]);
    },
  };
  const target = checkBackupTarget(path.join(dir, 'backup'), dataDir);
  const result = await writeBackup({ dataDir, snapshot, ca: live.ca, keyFile: (keyId) => live.keys.fileOf(keyId) }, target);
  await Promise.all(racing);
  const liveNow = live.ca.listAuthorities();
  assert.ok(liveNow.some((a) => a.kind === 'root' && a.state === 'prepared'), 'the new root was made, after the backup');
  assert.ok(!liveNow.some((a) => a.id === oldRoot), 'the revoke went through, after the backup');
  assert.ok(!fs.existsSync(live.keys.fileOf(oldRootKey)), 'and deleted its key');

  const restored = await openTestCa(result.dir, {}, clock);
  t.after(() => restored.close());
  const held = restored.ca.listAuthorities();
  assert.ok(held.some((a) => a.id === oldRoot && a.state === 'tainted'), 'the backup is from before the revoke');
  assert.ok(!held.some((a) => a.kind === 'root' && a.state === 'prepared'), 'and from before the new root');
  assert.equal(result.caKeys, fs.readdirSync(path.join(result.dir, 'ca', 'keys')).length);
  assert.equal(result.caKeys, held.length, 'one key per authority of its journal');
});

test('a snapshot of a large datastore lets the event loop run between its steps, and takes in a commit made meanwhile', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-steps-');
  t.after(cleanup);
  const clock = new FakeClock(Date.now() - 3_600_000);
  const ds = await openSqliteDatastore({ file: path.join(dir, 'datastore.sqlite3'), clock });
  t.after(() => ds.close());
  await ds.createEntries(Array.from({ length: 5000 }, (_, i) => entry(i)));
  const file = path.join(dir, 'snapshot.sqlite3');
  fs.closeSync(fs.openSync(file, 'wx', 0o600));

  let turns = 0;
  let committed = false;
  let pending = true;
  const ticking = (): void => {
    turns++;
    // A write through the server's connection while the copy is under way, as an entry created over the admin API.
    if (turns === 2) void ds.createEntries([entry(5000)]).then(() => (committed = true));
    if (pending) setImmediate(ticking);
  };
  setImmediate(ticking);
  await ds.snapshotTo(file);
  pending = false;
  assert.ok(committed, 'the commit was made before the snapshot ended');
  assert.ok(turns >= 5, `the event loop ran ${turns} times during the snapshot`);

  const copy = await openSqliteDatastore({ file, clock });
  t.after(() => copy.close());
  assert.equal(await copy.countEntries(), 5001);
  assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
});

test('a snapshot stops between steps when its signal is aborted, with the abort reason', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-abort-');
  t.after(cleanup);
  const ds = await openSqliteDatastore({ file: path.join(dir, 'datastore.sqlite3'), clock: new FakeClock(Date.now() - 3_600_000) });
  t.after(() => ds.close());
  await ds.createEntries(Array.from({ length: 2000 }, (_, i) => entry(i)));
  const file = path.join(dir, 'snapshot.sqlite3');
  fs.closeSync(fs.openSync(file, 'wx', 0o600));
  const stop = new AbortController();
  setImmediate(() => stop.abort(new Error('the server is stopping')));
  await assert.rejects(ds.snapshotTo(file, stop.signal), /the server is stopping/);
});

test('a backup directory name too long to stage beside is refused naming the limit, before anything is written', (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-name-');
  t.after(cleanup);
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  // 231 bytes is the longest name whose staging name ("<name>.incomplete-<12 hex>") fits in 255.
  assert.equal(checkBackupTarget(path.join(dir, 'b'.repeat(231)), dataDir).dir, path.join(dir, 'b'.repeat(231)));
  assert.throws(() => checkBackupTarget(path.join(dir, 'b'.repeat(232)), dataDir), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'invalid_argument');
    assert.match(err.message, /is longer than 231 bytes: .* give a shorter name$/);
    return true;
  });
  assert.deepEqual(fs.readdirSync(dir), ['data']);
});

const asRoot = { skip: process.geteuid?.() !== 0 ? 'needs root, to give a directory to another uid' : false };

test('a backup directory another user could change (an empty one they own, a parent they may write) is refused naming it, before anything is written', asRoot, (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-owner-');
  t.after(cleanup);
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  // Made ahead of the operator by another user, in a directory both may write (as /tmp): the server would fill it
  // with the CA keys, and its owner could then swap the backup's files for keys of their own.
  const theirs = path.join(dir, 'theirs');
  fs.mkdirSync(theirs);
  fs.chownSync(theirs, 65534, 65534);
  assert.throws(() => checkBackupTarget(theirs, dataDir), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^backup directory: ${theirs} belongs to uid 65534, so that user could replace what meshid puts under it`));
    return true;
  });
  const open = path.join(dir, 'open');
  fs.mkdirSync(open);
  fs.chmodSync(open, 0o777);
  assert.throws(() => checkBackupTarget(path.join(open, 'backup'), dataDir), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^backup directory: ${open} is writable by other users \\(mode 777\\) without the sticky bit`));
    return true;
  });
  assert.deepEqual(fs.readdirSync(theirs), []);
  assert.deepEqual(fs.readdirSync(open), []);
});
