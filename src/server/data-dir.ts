import fs from 'node:fs';
import path from 'node:path';
import { ensurePrivateDir, removeStaleTempFiles, writeFileAtomic } from '../common/atomic-file.js';
import { acquireDataDirLock } from '../common/data-dir-lock.js';
import { failedPrecondition } from '../common/errors.js';
import { storageSetupError } from '../common/storage-failure.js';
import { SERVER_LOCK_FILE } from './backup/server-lock-probe.js';

/** The file naming the trust domain a data dir belongs to; a backup moves it into place last. */
export const DATA_DIR_MARKER = 'meshid-server.json';
const MARKER = DATA_DIR_MARKER;
const FORMAT = 1;

/**
 * What a data dir's marker file says: the trust domain it names (not yet checked to be one), or why it cannot be
 * read by this version (corrupt, or another format), worded to follow "<the directory> has ...".
 */
export function readDataDirMarker(marker: string): { trustDomain: unknown } | { unreadable: string } {
  let parsed: { trust_domain?: unknown; format?: unknown };
  try {
    parsed = JSON.parse(fs.readFileSync(marker, 'utf8')) as typeof parsed;
  } catch {
    return { unreadable: `a corrupt ${MARKER}` };
  }
  const format = parsed.format;
  // A higher number is a newer version's (a rollback), not damage: the operator needs to hear which it is.
  if (typeof format === 'number' && format > FORMAT) return { unreadable: `format ${format}, written by a newer meshid-server (this one reads format ${FORMAT})` };
  if (format !== FORMAT) return { unreadable: `format ${String(format)}, this meshid-server reads format ${FORMAT}` };
  return { trustDomain: parsed.trust_domain };
}

/**
 * Whether `name` in data dir `dataDir` without a marker is what a first start killed before its marker's rename
 * leaves: its lock file, the marker's temp file, both regular files (a directory so named is someone else's, and a
 * restore could not remove it). A dir holding nothing else never served: run claims it, restore restores into it.
 */
export function leftByKilledFirstStart(dataDir: string, name: string): boolean {
  if (name !== SERVER_LOCK_FILE && !(name.startsWith(`.${MARKER}.`) && name.endsWith('.tmp'))) return false;
  return fs.lstatSync(path.join(dataDir, name), { throwIfNoEntry: false })?.isFile() ?? true;
}

/**
 * Claims a data dir for one trust domain and locks it for this process (acquireDataDirLock); returns the release
 * function. An empty or new dir is initialised (0700, marker file); a dir that holds something else, or another trust
 * domain's state, stops startup with a clear error and is left untouched (no lock file either). The marker is written
 * only under the lock: two first starts racing on one new dir would otherwise both find it empty and both write
 * theirs, and the one the lock then refuses could leave its trust domain's name under the one that serves.
 */
export function openDataDir(dataDir: string, trustDomain: string): () => void {
  const inDataDir = (cause: string) => `cannot use the data dir ${dataDir}: ${cause}`;
  try {
    if (check(dataDir, trustDomain) === 'ours') {
      // Only when needed: a data dir that is already private may sit on a file system mounted read-only.
      if ((fs.statSync(dataDir).mode & 0o777) !== 0o700) fs.chmodSync(dataDir, 0o700);
    } else {
      ensurePrivateDir(dataDir, { purpose: 'data directory', setting: '--data-dir, data_dir' });
    }
  } catch (err) {
    throw storageSetupError(err, dataDir, inDataDir);
  }
  const unlock = lockServerFile(path.join(dataDir, SERVER_LOCK_FILE));
  try {
    // Again under the lock: a start that held it before this one may have claimed the dir since.
    if (check(dataDir, trustDomain) === 'unclaimed') {
      // A first start killed before its marker's rename leaves only the marker's temp file: the dir never served.
      removeStaleTempFiles(dataDir, path.join(dataDir, MARKER));
      writeFileAtomic(path.join(dataDir, MARKER), JSON.stringify({ trust_domain: trustDomain, format: FORMAT }) + '\n', 0o600);
    }
  } catch (err) {
    unlock();
    throw storageSetupError(err, dataDir, inDataDir);
  }
  return unlock;
}

/**
 * Reads, never writes: 'ours' when the marker names `trustDomain`, 'unclaimed' when the dir is absent or holds
 * nothing but what a first start killed before its marker left (its lock file, the marker's temp file); throws the
 * refusal otherwise.
 */
function check(dataDir: string, trustDomain: string): 'ours' | 'unclaimed' {
  const marker = path.join(dataDir, MARKER);
  // Not only absent: a path through a file (ENOTDIR) or a directory this user cannot search is ensurePrivateDir's to
  // explain, naming the part of the path at fault, where a stat here would throw errno's bare words.
  if (!fs.existsSync(dataDir)) return 'unclaimed';
  const st = fs.statSync(dataDir);
  if (!st.isDirectory()) throw failedPrecondition(`data dir ${dataDir} is not a directory`);
  if (fs.existsSync(marker)) {
    const read = readDataDirMarker(marker);
    if ('unreadable' in read) {
      throw failedPrecondition(`data dir ${dataDir} has ${read.unreadable}: restore it from a backup, or run the meshid-server that wrote it`);
    }
    if (read.trustDomain !== trustDomain) {
      throw failedPrecondition(
        `data dir ${dataDir} belongs to trust domain "${String(read.trustDomain)}", not "${trustDomain}": use another --data-dir or the matching --trust-domain`,
      );
    }
    return 'ours';
  }
  const others = fs.readdirSync(dataDir).filter((n) => !leftByKilledFirstStart(dataDir, n));
  if (others.length > 0) {
    throw failedPrecondition(
      `data dir ${dataDir} is not empty and is not a meshid-server data dir (no ${MARKER}): point --data-dir at an empty or new directory`,
    );
  }
  return 'unclaimed';
}

/**
 * acquireDataDirLock, and then the lock file still is the one locked. A restore empties a dir a first start's kill
 * left (removeKilledFirstStart) by removing its lock file while it holds it: a start that opened the file before and
 * takes the lock after the restore let go holds a file no longer in the dir, and the next start, making a new one,
 * would run beside it. Such a lock is let go and taken again, on the file the path names now.
 */
function lockServerFile(lockFile: string): () => void {
  for (let attempt = 1; ; attempt++) {
    const before = fs.statSync(lockFile, { throwIfNoEntry: false });
    // Its lock is a restore's too (meshid-server restore): which of the two holds it, the refusal cannot tell.
    const unlock = acquireDataDirLock(lockFile, 'meshid-server', {
      heldBy: 'a running meshid-server or a meshid-server restore in progress',
      remedy: 'stop that server or let the restore finish,',
    });
    const after = fs.statSync(lockFile, { throwIfNoEntry: false });
    // The same file before the open and after the lock: the one opened, locked (its number is not reused while open).
    if (before !== undefined && after !== undefined && before.ino === after.ino && before.dev === after.dev) return unlock;
    unlock();
    if (attempt === MAX_LOCK_ATTEMPTS) {
      throw failedPrecondition(`the data dir's lock ${lockFile} was removed or replaced each time it was taken: is a restore into the data dir running? Let it end, then start again`);
    }
  }
}

/** A first start makes the lock file on its first attempt, so checks it on its second. */
const MAX_LOCK_ATTEMPTS = 4;
