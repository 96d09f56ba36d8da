/**
 * `meshid-server backup --out DIR` against a real server process while something races it: backups taken while CA
 * rotations, taints and revokes go on each restore, and a server process stopped mid-backup (SIGTERM, SIGKILL)
 * leaves nothing that looks like a backup and starts again on its datastore. The backup's contents and refusals are
 * server-backup.test.ts's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';
import { backupCli } from '../support/server-restore-kit.js';
import { teardown } from '../support/teardown.js';

test('backups taken while CA rotations, taints and revokes race them each hold every key their journal names, and restore', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-race-');
  teardown(t).after(cleanup);
  const live = await startServerProcess(dir);
  teardown(t).after(() => live.stop());
  const activeRoot = async (): Promise<string> => {
    const shown = JSON.parse((await live.cli(['ca', 'show', '--output', 'json'])).out) as { authorities: Array<{ id: string; kind: string; state: string }> };
    return shown.authorities.find((a) => a.kind === 'root' && a.state === 'active')!.id;
  };

  const backups: string[] = [];
  for (let round = 0; round < 3; round++) {
    const root = await activeRoot();
    const out = path.join(dir, `backup-${round}`);
    backups.push(out);
    // Sent together, so the server has them all at once: the taint makes a new root (a key written), the revoke deletes
    // the old root's key (forced: no agent runs to move off it), rotate-root writes another key, and a backup runs.
    const [backup, revoked] = await Promise.all([
      backupCli(live, ['--out', out]),
      live.cli(['ca', 'taint', '--id', root]).then(() => live.cli(['ca', 'revoke', '--id', root, '--force'])),
      live.cli(['ca', 'rotate-root']),
    ]);
    assert.equal(backup.code, 0, backup.err);
    assert.equal(revoked.code, 0, revoked.err);
  }
  assert.equal(await live.stop(), 0);

  for (const [i, out] of backups.entries()) {
    const restoreDir = path.join(dir, `restore-${i}`);
    fs.mkdirSync(restoreDir);
    fs.cpSync(out, path.join(restoreDir, 'data'), { recursive: true });
    const restored = await startServerProcess(restoreDir);
    try {
      const shown = (await restored.cli(['ca', 'show'])).out;
      assert.equal((shown.match(/Authority ID/g) ?? []).length, fs.readdirSync(path.join(out, 'ca', 'keys')).length, `backup ${i}: one key per authority`);
    } finally {
      assert.equal(await restored.stop(), 0);
    }
  }
});

/** The datastore snapshot of a backup under way, in the data dir (snapshotInto), once SQLite has written into it. */
function snapshotUnderWay(dataDir: string): string | undefined {
  for (const name of fs.readdirSync(dataDir)) {
    const file = path.join(dataDir, name);
    if (name.startsWith('backup-snapshot.') && !name.endsWith('-journal') && (fs.statSync(file, { throwIfNoEntry: false })?.size ?? 0) > 0) return file;
  }
  return undefined;
}

/**
 * A server process on a datastore large enough that its backup's snapshot (a hundred pages per event-loop turn) is
 * still under way when a signal arrives: 256 MiB of rows in a table of its own, added while the server is stopped.
 */
async function startWithBallast(dir: string): Promise<ServerProcess> {
  const first = await startServerProcess(dir);
  assert.equal(await first.stop(), 0);
  const db = new Database(path.join(first.dataDir, 'datastore.sqlite3'));
  db.exec('CREATE TABLE ballast (b BLOB)');
  const insert = db.prepare('INSERT INTO ballast VALUES (randomblob(1048576))');
  db.transaction(() => {
    for (let i = 0; i < 256; i++) insert.run();
  })();
  db.close();
  return startServerProcess(dir);
}

/** The backup's progress is an external event (another process's writes): polled for, with a generous bound. */
async function untilSnapshotUnderWay(live: ServerProcess): Promise<void> {
  for (let attempt = 0; snapshotUnderWay(live.dataDir) === undefined; attempt++) {
    if (attempt > 3000) throw new Error(`the backup never started copying the datastore:\n${live.output()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a server process sent SIGTERM mid-backup stops, answers the backup unavailable, leaves nothing that looks like a backup, and its datastore opens on the next start', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-sigterm-');
  teardown(t).after(cleanup);
  const live = await startWithBallast(dir);
  teardown(t).after(() => live.stop());
  const backups = path.join(dir, 'backups');
  fs.mkdirSync(backups);
  const out = path.join(backups, 'backup');
  const backup = backupCli(live, ['--out', out]);
  await untilSnapshotUnderWay(live);
  const exited = live.stop('SIGTERM');
  const bound = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 30_000).unref());
  assert.equal(await Promise.race([exited, bound]), 0, 'the server stops without finishing the backup');

  const refused = await backup;
  assert.equal(refused.code, 1);
  assert.equal(refused.out, '');
  assert.match(refused.err, /^Error: Unavailable: the server is stopping: the backup was not finished and nothing of it was kept; run it again once it is back\n$/);
  // Complete is DIR itself holding meshid-server.json: there is neither, nor the staging directory.
  assert.deepEqual(fs.readdirSync(backups), []);
  assert.deepEqual(fs.readdirSync(live.dataDir).filter((name) => name.startsWith('backup-snapshot.')), [], 'nor its snapshot in the data dir');

  const again = await startServerProcess(dir);
  teardown(t).after(() => again.stop());
  const check = new Database(path.join(again.dataDir, 'datastore.sqlite3'), { readonly: true });
  teardown(t).after(() => check.close());
  assert.equal(check.pragma('quick_check', { simple: true }), 'ok');
  assert.equal((check.prepare('SELECT count(*) AS n FROM ballast').get() as { n: number }).n, 256);
  assert.equal((await again.cli(['bundle', 'show'])).code, 0);
});

test('a server process killed (SIGKILL) mid-backup into an empty directory restarts without its scratch snapshot, and a backup into what it left is refused naming the leftover until emptied', async (t) => {
  const { dir, cleanup } = tempDir('meshid-backup-sigkill-');
  teardown(t).after(cleanup);
  const live = await startWithBallast(dir);
  // The kill below comes after a wait that may fail.
  teardown(t).after(() => live.stop('SIGKILL'));
  const out = path.join(dir, 'backup');
  fs.mkdirSync(out);
  const backup = backupCli(live, ['--out', out]);
  await untilSnapshotUnderWay(live);
  await live.stop('SIGKILL');
  assert.equal((await backup).code, 1);
  const [staging, ...others] = fs.readdirSync(out);
  assert.match(staging ?? '', /^backup\.incomplete-[0-9a-f]{12}$/, 'the kill leaves the staging directory inside DIR');
  assert.deepEqual(others, []);

  const again = await startServerProcess(dir);
  teardown(t).after(() => again.stop());
  assert.deepEqual(fs.readdirSync(again.dataDir).filter((name) => name.startsWith('backup-snapshot.')), [], 'the scratch snapshot is removed at the start');
  const refused = await backupCli(again, ['--out', out]);
  assert.equal(refused.code, 1);
  assert.equal(refused.out, '');
  assert.equal(
    refused.err,
    `Error: FailedPrecondition: the backup directory ${out} holds what an interrupted backup left (${staging}, and any files moved up ` +
      'beside it, without meshid-server.json): it is no backup; empty the directory and run the backup again\n',
  );
  fs.rmSync(path.join(out, staging!), { recursive: true });
  const written = await backupCli(again, ['--out', out]);
  assert.equal(written.code, 0, written.err);
  assert.ok(fs.existsSync(path.join(out, 'meshid-server.json')));
});
