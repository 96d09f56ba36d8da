import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { failedPrecondition } from './errors.js';
import { storageSetupError } from './storage-failure.js';

/**
 * One process per data dir: two agents would overwrite each other's keys; two servers would rotate the CA on their
 * own, never hear each other's changes, and delete key files the other had not committed yet. The lock is SQLite's
 * own exclusive lock (POSIX record locks) on a small file in the data dir, held for the process's life: the kernel
 * drops it when the process dies, however it dies, and it holds between containers that share the volume on one
 * host, where pids say nothing (two agents can both be pid 1). `program` names the owner in the refusal
 * (meshid-agent, meshid-server), or `heldBy` names who may hold it and `remedy` what to do when that can be another
 * kind of process (a meshid-server data dir is also locked by a restore into it). Returns the release function. A data dir that cannot take the lock file (a full
 * disk, a read-only file system) is refused with failed_precondition naming the directory and the cause. The lock
 * file is 0600, as everything else in the data dir.
 */
export function acquireDataDirLock(
  file: string,
  program: string,
  { heldBy = `another ${program}`, remedy = 'stop it' }: { heldBy?: string; remedy?: string } = {},
): () => void {
  for (let attempt = 0; ; attempt++) {
    let db: Database.Database | undefined;
    try {
      createPrivately(file);
      db = new Database(file, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      // Nothing here needs a rollback journal; without one no `-journal` file sits beside the lock while it is held.
      db.pragma('journal_mode = MEMORY');
      // A write takes the lock; in exclusive locking mode it is kept after the commit, until the connection closes.
      db.exec('CREATE TABLE IF NOT EXISTS lock (held INTEGER)');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
      const held = db;
      return () => held.close();
    } catch (err) {
      db?.close();
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY') {
        throw failedPrecondition(`the data dir is in use by ${heldBy} (it holds ${file}); ${remedy} or use another --data-dir`);
      }
      // Earlier meshid-agents kept a pid file under this name: replaced once that agent is gone, never under it.
      if (code === 'SQLITE_NOTADB' && attempt === 0) {
        const owner = legacyOwner(file);
        if (owner !== undefined) {
          throw failedPrecondition(`the data dir is in use by another ${program} (pid ${owner}, lock ${file}); stop it or use another --data-dir`);
        }
        fs.rmSync(file, { force: true });
        continue;
      }
      const dir = path.dirname(file);
      throw storageSetupError(
        err,
        dir,
        (cause) => `cannot lock the data dir ${dir}: ${cause}. ${program} writes its lock, keys and state there: make room or make it writable, or use another --data-dir`,
      );
    }
  }
}

/**
 * Creates the lock file owner-only if absent: SQLite would create it 0644 (less the umask). One an earlier version
 * left open to others is narrowed, and only then: a data dir on a file system mounted read-only refuses a chmod.
 * Nothing secret is in it, but nobody else needs to read it either.
 */
function createPrivately(file: string): void {
  try {
    fs.closeSync(fs.openSync(file, 'wx', 0o600));
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
}

/** The pid an earlier agent's pid-file lock names, when that process still runs (and is not this one). */
function legacyOwner(file: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(file, 'utf8'), 10);
  } catch {
    return undefined;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}
