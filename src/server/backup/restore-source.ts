import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import { assertSafeDirectory } from '../../common/safe-directory.js';
import { DATA_DIR_MARKER, readDataDirMarker } from '../data-dir.js';
import { STAGING_INFIX } from './backup-target.js';
import { DATASTORE_FILE, SERVER_SVID_FILE } from './data-dir-backup.js';
import { refuseIfServerRuns } from './server-lock-probe.js';

const KEYS_DIR = path.join('ca', 'keys');

/** A backup directory as checked for `meshid-server restore --from DIR`. */
export interface RestoreSource {
  /** Its real path. */
  dir: string;
  trustDomain: string;
  /**
   * The files a restore copies, relative to `dir`: the marker, the datastore (with the -wal of a stopped server's
   * data dir copied whole, which is that datastore's own), the server SVID when there is one and every CA key file.
   * Never a lock, a -shm file, a backup's scratch snapshot or anything else in the directory.
   */
  files: string[];
}

/**
 * Checks that `requested` is a complete backup (`meshid-server backup`, or a copy of a stopped server's data dir):
 * meshid-server.json, which a backup moves into place last, readable and of this version's format; no staging
 * directory of an interrupted backup, or one given itself; a datastore file. Whether the datastore is meshid's and
 * its CA journal's keys are all here is only known once it is opened, which a restore does on its own copy
 * (data-dir-restore.ts). A directory another user could have changed is refused as a backup target is: its keys would
 * become the trust domain's.
 */
export function checkRestoreSource(requested: string): RestoreSource {
  if (requested === '') throw invalidArgument('flag --from is empty: give the backup directory to restore');
  const given = path.resolve(requested);
  if (path.basename(given).includes(STAGING_INFIX)) {
    throw failedPrecondition(
      `${requested} is the staging directory of an interrupted backup (${STAGING_INFIX}…): it is no backup; remove it and restore a complete one`,
    );
  }
  let dir: string;
  try {
    dir = fs.realpathSync(given);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw failedPrecondition(`the backup directory ${requested} does not exist`);
    if (code === 'EACCES') throw failedPrecondition(`the backup directory ${requested} cannot be reached by this user: run the restore as the server's user`);
    throw err;
  }
  if (!fs.statSync(dir).isDirectory()) throw failedPrecondition(`the backup directory ${requested} is not a directory`);
  assertSafeDirectory(dir, 'backup directory');
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') throw failedPrecondition(`the backup directory ${requested} cannot be read by this user: run the restore as the server's user`);
    throw err;
  }
  if (!entries.includes(DATA_DIR_MARKER)) {
    const leftover = entries.find((name) => name.includes(STAGING_INFIX));
    throw failedPrecondition(
      leftover !== undefined
        ? `the backup directory ${requested} holds what an interrupted backup left (${leftover}) and no ${DATA_DIR_MARKER}: it is no backup; restore a complete one`
        : `the backup directory ${requested} has no ${DATA_DIR_MARKER}, which a backup writes last: it is not a complete backup; restore a complete one`,
    );
  }
  const trustDomain = readTrustDomain(path.join(dir, DATA_DIR_MARKER), requested);
  if (!isFile(path.join(dir, DATASTORE_FILE))) {
    throw failedPrecondition(`the backup directory ${requested} has no ${DATASTORE_FILE}: it is not a complete backup; restore a complete one`);
  }
  // A data dir given as the backup: its datastore changes under the copy while its server runs.
  refuseIfServerRuns(dir, (lock) =>
    failedPrecondition(
      `${requested} is the data dir of a running meshid-server (it holds ${lock}): a copy of it taken now may be inconsistent; ` +
        'take a backup with `meshid-server backup --out DIR` and restore that, or stop that server first',
    ),
  );
  const keysDir = path.join(dir, KEYS_DIR);
  const keys = fs.existsSync(keysDir)
    ? fs.readdirSync(keysDir).filter((n) => n.endsWith('.pem') && !n.startsWith('.') && isFile(path.join(keysDir, n))).sort()
    : [];
  const files = [
    DATA_DIR_MARKER,
    DATASTORE_FILE,
    ...[`${DATASTORE_FILE}-wal`, SERVER_SVID_FILE].filter((name) => isFile(path.join(dir, name))),
    ...keys.map((name) => path.join(KEYS_DIR, name)),
  ];
  return { dir, trustDomain, files };
}

/** The trust domain a backup's marker names; one unreadable, or of another format, is no backup this version restores. */
function readTrustDomain(marker: string, requested: string): string {
  const read = readDataDirMarker(marker);
  if ('unreadable' in read) throw failedPrecondition(`the backup directory ${requested} has ${read.unreadable}: restore another backup, or run the meshid-server that wrote it`);
  if (typeof read.trustDomain !== 'string' || read.trustDomain === '') {
    throw failedPrecondition(`the backup directory ${requested} has a ${DATA_DIR_MARKER} naming no trust domain: restore another backup`);
  }
  return read.trustDomain;
}

function isFile(file: string): boolean {
  return fs.statSync(file, { throwIfNoEntry: false })?.isFile() === true;
}
