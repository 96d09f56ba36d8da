import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDir } from '../../common/atomic-file.js';
import { failedPrecondition, resourceExhausted } from '../../common/errors.js';
import { storageFailureCause } from '../../common/storage-failure.js';
import type { BackupTarget } from './backup-target.js';

/** The files of a data dir a restore needs, by their names there (data-dir.ts, server.ts, server-svid.ts). */
export const DATASTORE_FILE = 'datastore.sqlite3';
const TRUST_DOMAIN_MARKER = 'meshid-server.json';
const SERVER_SVID_FILE = 'server-svid.json';
const KEYS_DIR = path.join('ca', 'keys');

/** What a backup reads from the running server. The consumer's view: the datastore, CA manager and key store give it. */
export interface BackupSources {
  dataDir: string;
  /** An online snapshot of the datastore into an existing empty file (SqliteDatastore.snapshotTo). */
  snapshot: { snapshotTo(file: string, signal?: AbortSignal): Promise<void> };
  /** The CA's turn: nothing of the journal or the key files changes while `fn` runs (CaManager.withJournalSettled). */
  ca: { withJournalSettled<T>(fn: (keyIds: readonly string[]) => Promise<T>): Promise<T> };
  /** The file holding a CA key (KeyStore.fileOf). */
  keyFile(keyId: string): string;
}

export interface BackupResult {
  dir: string;
  /** Paths relative to `dir`, sorted, with their sizes in bytes. */
  files: Array<{ path: string; size: number }>;
  datastoreSize: number;
  caKeys: number;
}

/**
 * Writes a backup of the running server's data dir into `target.dir`: a snapshot of the datastore, the CA keys its
 * journal names, the trust domain marker and the server's SVID; never server.lock, the -wal and -shm files or a
 * first-setup marker. The snapshot and the key copies are made in one turn of the CA, so every key the snapshot's
 * journal names is in the backup, and nothing else: a restored server starts from it as from the data dir at that
 * moment. Everything is written (0700 directories, 0600 files, fsynced) into a staging directory of its own and moved
 * into place at the end, meshid-server.json last, so a backup that fails or is interrupted never looks complete; on a
 * failure the staging directory is removed. `signal` stops it.
 */
export async function writeBackup(sources: BackupSources, target: BackupTarget, signal?: AbortSignal): Promise<BackupResult> {
  signal?.throwIfAborted();
  // Staged on the file system of the backup: beside a directory to create, inside one given (a mount point, maybe).
  // A visible name: a kill -9 mid-backup leaves it for the operator to see and remove, and it never reads as a backup.
  const staging = path.join(target.exists ? target.dir : target.parent, `${path.basename(target.dir)}.incomplete-${randomBytes(6).toString('hex')}`);
  try {
    // The keys will sit in it: private before anything is written (the staging directory is, too).
    if (target.exists) fs.chmodSync(target.dir, 0o700);
    makePrivateDir(staging);
  } catch (err) {
    throw backupWriteError(err, path.dirname(staging));
  }
  try {
    makePrivateDir(path.join(staging, 'ca'));
    makePrivateDir(path.join(staging, KEYS_DIR));
    let caKeys = 0;
    await sources.ca.withJournalSettled(async (keyIds) => {
      const datastore = path.join(staging, DATASTORE_FILE);
      // Created here, so it is 0600 from its first byte (SQLite would create it with the umask's mode).
      fs.closeSync(fs.openSync(datastore, 'wx', 0o600));
      await sources.snapshot.snapshotTo(datastore, signal);
      fsyncFile(datastore);
      for (const keyId of new Set(keyIds)) {
        const from = sources.keyFile(keyId);
        copyPrivateFile(from, path.join(staging, KEYS_DIR, path.basename(from)), () =>
          failedPrecondition(
            `CA key file ${from}, which the CA journal names, is missing: the live data dir is damaged (a restart would be ` +
              'refused too); restore that file from an earlier backup',
          ),
        );
        caKeys++;
      }
      // Written atomically by the server, and checked against the journal when a restored server starts: a copy of
      // the one in place is as good as the server's own after a restart, which it lets present the same SVID.
      copyIfPresent(path.join(sources.dataDir, SERVER_SVID_FILE), path.join(staging, SERVER_SVID_FILE));
    });
    copyPrivateFile(path.join(sources.dataDir, TRUST_DOMAIN_MARKER), path.join(staging, TRUST_DOMAIN_MARKER), () =>
      failedPrecondition(`${path.join(sources.dataDir, TRUST_DOMAIN_MARKER)} is missing from the live data dir`),
    );
    for (const dir of [path.join(staging, KEYS_DIR), path.join(staging, 'ca'), staging]) fsyncDir(dir);
    signal?.throwIfAborted();
    if (target.exists) moveIntoPlace(staging, target.dir);
    else renameIntoPlace(staging, target.dir);
    const files = listFiles(target.dir);
    return { dir: target.dir, files, datastoreSize: files.find((f) => f.path === DATASTORE_FILE)!.size, caKeys };
  } catch (err) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw backupWriteError(err, path.dirname(staging));
  }
}

/** mkdir with exactly 0700, whatever the umask. */
function makePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Copies `from` into a new file `to`, 0600 and fsynced; a missing source is `missing()`. */
function copyPrivateFile(from: string, to: string, missing: () => Error): void {
  let data: Buffer;
  try {
    data = fs.readFileSync(from);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw missing();
    throw err;
  }
  const fd = fs.openSync(to, 'wx', 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The server's SVID file is absent before its first save, or where it could not be saved: a restore mints a new one. */
function copyIfPresent(from: string, to: string): void {
  if (fs.existsSync(from)) copyPrivateFile(from, to, () => failedPrecondition(`${from} vanished while it was copied`));
}

const changedMeanwhile = (dir: string): Error =>
  failedPrecondition(`the backup directory ${dir} was made or filled by someone else while the backup was written: give a new one`);

/** The whole backup appears at once, by one rename(2) (which fails on anything made at `dir` since the check). */
function renameIntoPlace(staging: string, dir: string): void {
  try {
    fs.renameSync(staging, dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') throw changedMeanwhile(dir);
    throw err;
  }
  fsyncDir(path.dirname(dir));
}

/**
 * Into a directory that existed, its files move up one by one, meshid-server.json last: until it is there, neither a
 * server started on the directory nor a restore copied from it takes it for a data dir (data-dir.ts refuses a
 * directory without it that is not empty).
 */
function moveIntoPlace(staging: string, dir: string): void {
  const others = fs.readdirSync(dir).filter((name) => name !== path.basename(staging));
  if (others.length > 0) throw changedMeanwhile(dir);
  const names = fs.readdirSync(staging).sort((a, b) => Number(a === TRUST_DOMAIN_MARKER) - Number(b === TRUST_DOMAIN_MARKER));
  const moved: string[] = [];
  try {
    for (const name of names) {
      if (name === TRUST_DOMAIN_MARKER) fsyncDir(dir);
      fs.renameSync(path.join(staging, name), path.join(dir, name));
      moved.push(name);
    }
  } catch (err) {
    // The directory is left empty again, as it was given.
    for (const name of moved) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    throw err;
  }
  fs.rmdirSync(staging);
  fsyncDir(dir);
}

function listFiles(root: string, sub = ''): Array<{ path: string; size: number }> {
  const out: Array<{ path: string; size: number }> = [];
  for (const e of fs.readdirSync(path.join(root, sub), { withFileTypes: true })) {
    const rel = path.join(sub, e.name);
    if (e.isDirectory()) out.push(...listFiles(root, rel));
    else out.push({ path: rel, size: fs.statSync(path.join(root, rel)).size });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * A write into the backup's directory that failed because of where it wrote, as the operator acts on it: a full disk
 * is resource_exhausted, anything else (read-only, not writable by the server's user) failed_precondition, naming
 * the directory. Nothing of the backup is kept either way. Other errors pass as they are.
 */
function backupWriteError(err: unknown, dir: string): unknown {
  const cause = storageFailureCause(err, dir);
  if (cause === undefined) return err;
  const code = (err as { code?: unknown }).code;
  const message = `cannot write the backup into ${dir}: ${cause}; nothing of it was kept`;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' ? resourceExhausted(message) : failedPrecondition(message, err);
}
