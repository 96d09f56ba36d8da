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
import { removeBackupScratch, writeBackup } from '../../../src/server/backup/data-dir-backup.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';
import { fillDisk, mountTmpfs } from '../../support/tmpfs.js';
import { teardown } from '../../support/teardown.js';

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
  teardown(t).after(cleanup);
  const dataDir = path.join(dir, 'data');
  teardown(t).after(openDataDir(dataDir, 'example.org'));
  // Behind real time: OpenSSL judges the CA certificates by the real clock.
  const clock = new FakeClock(Date.now() - 3_600_000);
  const live = await openTestCa(dataDir, {}, clock);
  teardown(t).after(() => live.close());
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
  teardown(t).after(() => restored.close());
  const held = restored.ca.listAuthorities();
  assert.ok(held.some((a) => a.id === oldRoot && a.state === 'tainted'), 'the backup is from before the revoke');
  assert.ok(!held.some((a) => a.kind === 'root' && a.state === 'prepared'), 'and from before the new root');
  assert.equal(result.caKeys, fs.readdirSync(path.join(result.dir, 'ca', 'keys')).length);
  assert.equal(result.caKeys, held.length, 'one key per authority of its journal');
});

test('a snapshot of a large datastore lets the event loop run between its steps, and takes in a commit made meanwhile', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-steps-');
  teardown(t).after(cleanup);
  const clock = new FakeClock(Date.now() - 3_600_000);
  const ds = await openSqliteDatastore({ file: path.join(dir, 'datastore.sqlite3'), clock });
  teardown(t).after(() => ds.close());
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
  teardown(t).after(() => copy.close());
  assert.equal(await copy.countEntries(), 5001);
  assert.equal((fs.statSync(file).mode & 0o777).toString(8), '600');
});

test('a snapshot stops between steps when its signal is aborted, with the abort reason', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-abort-');
  teardown(t).after(cleanup);
  const ds = await openSqliteDatastore({ file: path.join(dir, 'datastore.sqlite3'), clock: new FakeClock(Date.now() - 3_600_000) });
  teardown(t).after(() => ds.close());
  await ds.createEntries(Array.from({ length: 2000 }, (_, i) => entry(i)));
  const file = path.join(dir, 'snapshot.sqlite3');
  fs.closeSync(fs.openSync(file, 'wx', 0o600));
  const stop = new AbortController();
  setImmediate(() => stop.abort(new Error('the server is stopping')));
  await assert.rejects(ds.snapshotTo(file, stop.signal), /the server is stopping/);
});

test('a backup directory name too long to stage beside is refused naming the limit, before anything is written', (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-name-');
  teardown(t).after(cleanup);
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
  teardown(t).after(cleanup);
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

/** A live data dir with its CA, and the sources a backup of it reads (FakeClock behind real time). */
async function liveSources(t: { after(fn: () => unknown): void }, dataDir: string, snapshotHook?: () => void) {
  teardown(t).after(openDataDir(dataDir, 'example.org'));
  const live = await openTestCa(dataDir, {}, new FakeClock(Date.now() - 3_600_000));
  teardown(t).after(() => live.close());
  const snapshot = {
    async snapshotTo(file: string, signal?: AbortSignal): Promise<void> {
      snapshotHook?.();
      await (live.ds as SqliteDatastore).snapshotTo(file, signal);
    },
  };
  return { dataDir, snapshot, ca: live.ca, keyFile: (keyId: string) => live.keys.fileOf(keyId) };
}

/** Stands in for another user who may write the directory above: one uid here, so the test makes the swap itself. */
function swapForLink(dir: string, to: string): void {
  fs.renameSync(dir, `${dir}.moved`);
  fs.symlinkSync(to, dir);
}

test('an empty backup directory swapped for a symbolic link between the check and the write is refused, and nothing is written or chmodded through the link (the swap stubs the other user)', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-swap-dir-');
  teardown(t).after(cleanup);
  const sources = await liveSources(t, path.join(dir, 'data'));
  const backupDir = path.join(dir, 'backup');
  fs.mkdirSync(backupDir, { mode: 0o700 });
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere, { mode: 0o755 });
  fs.chmodSync(elsewhere, 0o755);
  const target = checkBackupTarget(backupDir, sources.dataDir);
  swapForLink(backupDir, elsewhere);
  await assert.rejects(writeBackup(sources, target), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^${backupDir} was replaced \\(by a symbolic link or another directory\\) after the backup directory was checked`));
    return true;
  });
  assert.deepEqual(fs.readdirSync(elsewhere), []);
  assert.equal((fs.statSync(elsewhere).mode & 0o777).toString(8), '755', 'not chmodded through the link');
  assert.deepEqual(fs.readdirSync(`${backupDir}.moved`), []);
});

test("a new backup directory's parent swapped for a symbolic link between the check and the write is refused, and nothing is written through the link (the swap stubs the other user)", async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-swap-parent-');
  teardown(t).after(cleanup);
  const sources = await liveSources(t, path.join(dir, 'data'));
  const parent = path.join(dir, 'backups');
  fs.mkdirSync(parent);
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  const target = checkBackupTarget(path.join(parent, 'backup'), sources.dataDir);
  swapForLink(parent, elsewhere);
  await assert.rejects(writeBackup(sources, target), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^${parent} was replaced `));
    return true;
  });
  assert.deepEqual(fs.readdirSync(elsewhere), []);
  assert.deepEqual(fs.readdirSync(`${parent}.moved`), []);
});

test('an empty backup directory swapped for a symbolic link while the snapshot runs gets none of the backup through the link, and the backup is refused and removed (the swap stubs the other user)', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-swap-mid-');
  teardown(t).after(cleanup);
  const backupDir = path.join(dir, 'backup');
  const elsewhere = path.join(dir, 'elsewhere');
  const sources = await liveSources(t, path.join(dir, 'data'), () => swapForLink(backupDir, elsewhere));
  fs.mkdirSync(backupDir, { mode: 0o700 });
  fs.mkdirSync(elsewhere);
  const target = checkBackupTarget(backupDir, sources.dataDir);
  await assert.rejects(writeBackup(sources, target), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^${backupDir} was replaced `));
    return true;
  });
  assert.deepEqual(fs.readdirSync(elsewhere), []);
  assert.deepEqual(fs.readdirSync(`${backupDir}.moved`), [], 'the staging directory is removed from the directory checked');
});

test("a new backup's staging directory swapped for another directory while the snapshot runs is not what the backup reports at DIR: the backup is refused (the swap stubs another user of a group-writable parent)", async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-swap-staging-');
  teardown(t).after(cleanup);
  const parent = path.join(dir, 'backups');
  const backupDir = path.join(parent, 'backup');
  const sources = await liveSources(t, path.join(dir, 'data'), () => {
    const staging = fs.readdirSync(parent).find((name) => name.includes('.incomplete-'))!;
    fs.renameSync(path.join(parent, staging), path.join(parent, 'hidden'));
    fs.mkdirSync(path.join(parent, staging));
    fs.writeFileSync(path.join(parent, staging, 'meshid-server.json'), '{"forged":true}');
  });
  fs.mkdirSync(parent, { mode: 0o755 });
  const target = checkBackupTarget(backupDir, sources.dataDir);
  await assert.rejects(writeBackup(sources, target), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, new RegExp(`^the backup was not put in place: another directory was put under its staging name .* do not use ${backupDir},`));
    return true;
  });
});

test("SQLite is never handed a path in the backup's directory (it reopens by a name others may redirect): it snapshots into the data dir, and the scratch file is gone afterwards", async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-snapshot-scratch-');
  teardown(t).after(cleanup);
  const real = await liveSources(t, path.join(dir, 'data'));
  const given: string[] = [];
  const sources = { ...real, snapshot: { snapshotTo: async (file: string, signal?: AbortSignal): Promise<void> => (given.push(file), real.snapshot.snapshotTo(file, signal)) } };
  const backupDir = path.join(dir, 'backup');
  const result = await writeBackup(sources, checkBackupTarget(backupDir, sources.dataDir));
  assert.equal(given.length, 1);
  assert.equal(path.dirname(given[0]!), sources.dataDir);
  assert.equal(fs.existsSync(given[0]!), false, 'the scratch snapshot is removed');
  assert.ok(result.datastoreSize > 0);
  assert.equal(fs.statSync(path.join(backupDir, 'datastore.sqlite3')).size, result.datastoreSize);
  assert.equal((fs.statSync(path.join(backupDir, 'datastore.sqlite3')).mode & 0o777).toString(8), '600');
});

test('a scratch snapshot a kill -9 left in the data dir is removed at the next start, and nothing else', (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-scratch-left-');
  teardown(t).after(cleanup);
  fs.writeFileSync(path.join(dir, 'backup-snapshot.0123456789ab'), 'half a snapshot');
  fs.writeFileSync(path.join(dir, 'backup-snapshot.0123456789ab-journal'), 'its journal');
  fs.writeFileSync(path.join(dir, 'datastore.sqlite3'), 'kept');
  // A backup never makes a directory: one by that name is someone's, left alone, and no reason to refuse to start.
  fs.mkdirSync(path.join(dir, 'backup-snapshot.notes'));
  removeBackupScratch(dir);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['backup-snapshot.notes', 'datastore.sqlite3']);
});

test("a backup that finds no room for its scratch snapshot in the data dir is refused naming the data dir, not the backup's directory (real full tmpfs; root only)", async (t) => {
  const dataDisk = mountTmpfs(t, '8m');
  if (dataDisk === undefined) return;
  const { dir, cleanup } = tempDir('meshid-backup-scratch-full-');
  teardown(t).after(cleanup);
  const dataDir = path.join(dataDisk, 'data');
  teardown(t).after(openDataDir(dataDir, 'example.org'));
  const live = await openTestCa(dataDir, {}, new FakeClock(Date.now() - 3_600_000));
  teardown(t).after(() => live.close());
  await live.ds.createEntries(Array.from({ length: 500 }, (_, i) => entry(i)));
  // The live datastore is intact and readable; only a second copy of it does not fit.
  fillDisk(dataDisk);
  const target = checkBackupTarget(path.join(dir, 'backup'), dataDir);
  await assert.rejects(
    writeBackup({ dataDir, snapshot: live.ds as SqliteDatastore, ca: live.ca, keyFile: (keyId) => live.keys.fileOf(keyId) }, target),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'resource_exhausted');
      assert.ok(err.message.includes(dataDir), err.message);
      assert.ok(!err.message.includes(`backup into ${dir}`), `the backup's directory has room: ${err.message}`);
      return true;
    },
  );
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing of the backup is left');
  assert.deepEqual(fs.readdirSync(dataDir).filter((n) => n.startsWith('backup-snapshot.')), [], 'nor its scratch snapshot');
});
