/**
 * Preloaded into a meshid-server process (NODE_OPTIONS=--import) by crash tests: SIGKILLs the process at one exact
 * point of a first CA setup or of a root revoke, named by MESHID_TEST_KILL_AT, so a test can examine the files each point leaves and
 * restart on them. Points:
 *   before-data-dir-marker   a new data dir's meshid-server.json is about to be renamed into place
 *   before-marker            the first-setup marker is about to be renamed into place
 *   keys:<n>                 <n> CA key files have been renamed into ca/keys (keys:0: the first is about to be)
 *   before-marker-removal    the first commit is done and the marker is about to be removed
 *   before-root-key-removal  a root's key file is about to be removed (a revoke's, once its commit is done)
 *   migration:<n>            the first statement of datastore schema migration <n> has run, inside the one transaction
 *                            of a start's pending migrations (those before it applied there too, none committed)
 * and of a `meshid-server restore`:
 *   restore-files:<n>        <n> files have been copied into the restore's staging directory (the next is about to be)
 *   before-restore-rename    the staging directory, tokens voided and fsynced, is about to be renamed into the data dir
 *   after-restore-rename     it has been renamed into place (its parent not yet fsynced, the lock still held)
 * The kill is a real SIGKILL of the process by itself; nothing about the server is stubbed.
 *
 * MESHID_TEST_PAUSE_AT names points (comma-separated) where the process instead stops once, says "paused at <point>"
 * on stderr and reads one byte from stdin before it goes on, so a test can run another process in between:
 *   restore-lock             a restore's staging directory is made and its lock file is about to be created
 *   restore-copy             a restore holds its staging directory's lock and is about to copy the first file into it
 *   data-dir-lock            a start has looked at its data dir (absent, or unclaimed) and is about to create its lock
 *                            file (server.lock, outside a restore's staging directory)
 *   data-dir-marker          a new data dir's meshid-server.json is about to be renamed into place
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from '../../src/server/datastore/migrations.js';

const point = process.env['MESHID_TEST_KILL_AT'];

function die(): never {
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL to oneself lands before kill(2) returns to this thread; this only keeps the type checker honest.
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
}

const isDataDirMarker = (p: fs.PathLike): boolean => path.basename(String(p)) === 'meshid-server.json';
const isMarker = (p: fs.PathLike): boolean => String(p).endsWith(`${path.sep}ca${path.sep}first-setup`);
const isKey = (p: fs.PathLike): boolean => path.basename(path.dirname(String(p))) === 'keys' && String(p).endsWith('.pem');
const isRootKey = (p: fs.PathLike): boolean => isKey(p) && path.basename(String(p)).startsWith('root-');
const isRestoreStaging = (p: fs.PathLike): boolean => /\.restoring-[0-9a-f]{12}$/.test(String(p));
const inRestoreStaging = (p: fs.PathLike): boolean => /\.restoring-[0-9a-f]{12}\//.test(String(p));

const pauses = new Set((process.env['MESHID_TEST_PAUSE_AT'] ?? '').split(',').filter((p) => p !== ''));

function pauseAt(name: string): void {
  if (!pauses.delete(name)) return;
  // Synchronous both ways: the restore's steps are, and the test must see the pause before anything else happens.
  fs.writeSync(2, `paused at ${name}\n`);
  fs.readSync(0, Buffer.alloc(1));
}

if (point !== undefined || pauses.size > 0) {
  const keysAt = /^keys:(\d+)$/.exec(point ?? '');
  const keysWanted = keysAt ? Number(keysAt[1]) : -1;
  let keysRenamed = 0;
  const rename = fs.renameSync;
  fs.renameSync = (from: fs.PathLike, to: fs.PathLike): void => {
    if (point === 'before-marker' && isMarker(to)) die();
    if (point === 'before-data-dir-marker' && isDataDirMarker(to)) die();
    if (isDataDirMarker(to)) pauseAt('data-dir-marker');
    if (isKey(to) && keysRenamed === keysWanted) die();
    if (point === 'before-restore-rename' && isRestoreStaging(from)) die();
    rename(from, to);
    if (isKey(to) && ++keysRenamed === keysWanted) die();
    if (point === 'after-restore-rename' && isRestoreStaging(from)) die();
  };
  const migrationAt = /^migration:(\d+)$/.exec(point ?? '');
  const migrationStatement = migrationAt ? MIGRATIONS.find((m) => m.version === Number(migrationAt[1]))?.statements[0] : undefined;
  if (migrationStatement !== undefined) {
    // better-sqlite3 stays outside the server's bundle: the server runs its migrations through this very prototype.
    const exec = Database.prototype.exec;
    Database.prototype.exec = function (this: Database.Database, source: string): Database.Database {
      const result = exec.call(this, source);
      if (source === migrationStatement) die();
      return result;
    };
  }
  const filesAt = /^restore-files:(\d+)$/.exec(point ?? '');
  const filesWanted = filesAt ? Number(filesAt[1]) : -1;
  let filesCopied = 0;
  const open = fs.openSync;
  // A restore copies each file into a new one ('wx'); the lock file, opened otherwise, does not count.
  fs.openSync = (...args: Parameters<typeof fs.openSync>): number => {
    const [p, flags] = args;
    if (flags === 'wx' && inRestoreStaging(p)) {
      if (String(p).endsWith('/server.lock')) pauseAt('restore-lock');
      else {
        pauseAt('restore-copy');
        if (filesCopied++ === filesWanted) die();
      }
    }
    if (flags === 'wx' && !inRestoreStaging(p) && String(p).endsWith('/server.lock')) pauseAt('data-dir-lock');
    return open(...args);
  };
  const rm = fs.rmSync;
  fs.rmSync = (p: fs.PathLike, options?: fs.RmOptions): void => {
    if (point === 'before-marker-removal' && isMarker(p)) die();
    if (point === 'before-root-key-removal' && isRootKey(p)) die();
    rm(p, options);
  };
  // The marker is removed with unlinkSync (rmSync misreports an EPERM); rmSync is kept for any other removal.
  const unlink = fs.unlinkSync;
  fs.unlinkSync = (p: fs.PathLike): void => {
    if (point === 'before-marker-removal' && isMarker(p)) die();
    unlink(p);
  };
}
