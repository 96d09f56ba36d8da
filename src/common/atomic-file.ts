import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertSafeDirectory } from './safe-directory.js';
import { failedPrecondition } from './errors.js';
import { createDirectory, directoryCreationError } from './create-directory.js';

/**
 * Writes a file so that a crash or kill -9 at any moment leaves either the old content or the new, never a mix:
 * write a temp file in the same directory, fsync it, rename it over the target, fsync the directory.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = stageFile(file, mode, (fd) => fs.writeFileSync(fd, data));
  try {
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(path.dirname(file));
}

/**
 * Writes several files, each as writeFileAtomic does (a file is its old content or its new, never a mix), the set as
 * nearly together as renames allow. Every file is staged under a temp name before any is replaced, so a failure while
 * staging (a full disk) replaces none. The renames then run one after another in the order given, as POSIX has no
 * rename of several names at once: a rename that fails leaves the files before it new and the rest old, and removes
 * the temp files of the rest; a kill between two renames leaves the same mix, and the temp files of the rest behind
 * (removeStaleTempFiles names them). A caller whose readers must notice a mix lists last the file that says the set is
 * new, and one they can check the others against (x509 mint: the certificate, after its key).
 */
export function writeFilesAtomic(files: Array<{ file: string; data: string | Uint8Array; mode?: number }>): void {
  const staged: Array<{ tmp: string; file: string }> = [];
  try {
    for (const { file, data, mode = 0o600 } of files) staged.push({ tmp: stageFile(file, mode, (fd) => fs.writeFileSync(fd, data)), file });
  } catch (err) {
    for (const s of staged) fs.rmSync(s.tmp, { force: true });
    throw err;
  }
  let renamed = 0;
  try {
    for (const s of staged) {
      fs.renameSync(s.tmp, s.file);
      renamed++;
    }
  } catch (err) {
    // A caller that retries must not leave one more set of temp files behind each time, one perhaps holding a key.
    for (const s of staged.slice(renamed)) fs.rmSync(s.tmp, { force: true });
    throw err;
  }
  for (const dir of new Set(staged.map((s) => path.dirname(s.file)))) fsyncDir(dir);
}

/**
 * A new temp file next to `file` (a name removeStaleTempFiles knows), filled by `write`, fsynced; returns its path. A
 * write that fails (a full disk) removes the temp file: a caller that retries must not leave one more behind each
 * time, holding part of a key.
 */
export function stageFile(file: string, mode: number, write: (fd: number) => void): string {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    write(fd);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  return tmp;
}

/**
 * Creates a directory (and parents) and forces its mode, since mkdir's mode is masked by the umask. Refuses one
 * another local user could tamper with (assertSafeDirectory), before creating anything and after. An existing
 * directory is made private only when it is meshid's to change: never a shared one (world-writable or sticky, as
 * /tmp), and with `adoptExisting: false` (a directory the operator named only to hold a socket: a home, /run) none;
 * those must be private already, or are refused with what to do. A directory that cannot be created is refused
 * naming `setting`, the flag and config key that gave the path ("--data-dir, data_dir"). Missing parents are 0700 too
 * unless `parentsMode` says otherwise (forced, whatever the umask).
 */
export function ensurePrivateDir(dir: string, options: { purpose?: string; adoptExisting?: boolean; setting?: string; parentsMode?: number } = {}): void {
  const purpose = options.purpose ?? 'private directory';
  assertSafeDirectory(dir, purpose);
  const existing = fs.statSync(dir, { throwIfNoEntry: false });
  if (existing !== undefined && (existing.mode & 0o077) !== 0) {
    const mode = (existing.mode & 0o7777).toString(8);
    if ((existing.mode & 0o1002) !== 0) {
      throw failedPrecondition(`${purpose}: ${dir} is shared with other users (mode ${mode}); name a directory of meshid's own under it, which meshid creates`);
    }
    if (options.adoptExisting === false) {
      throw failedPrecondition(
        `${purpose}: other users can enter ${dir} (mode ${mode}); chmod 700 ${dir}, or name a directory that does not exist yet, which meshid creates private`,
      );
    }
  }
  let created: string | undefined;
  try {
    created = createDirectory(dir, 0o700);
  } catch (err) {
    throw directoryCreationError(err, dir, purpose, options.setting);
  }
  fs.chmodSync(dir, 0o700);
  if (options.parentsMode !== undefined && created !== undefined && created !== dir) {
    for (let d = path.dirname(dir); ; d = path.dirname(d)) {
      fs.chmodSync(d, options.parentsMode);
      if (d === created || path.dirname(d) === d) break;
    }
  }
  // A new directory's name is in its parent: unsynced, a power cut can lose it with every fsynced file inside.
  for (let d = dir; created !== undefined && path.dirname(d) !== d; d = path.dirname(d)) {
    try {
      fsyncDir(path.dirname(d));
    } catch (err) {
      // A parent we may create in but not read (mode 0333) cannot be opened to sync: as durable as the system makes it.
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
    }
    if (d === created) break;
  }
  assertSafeDirectory(dir, purpose);
}

/** Removes temp files a crash left behind by writeFileAtomic: all in `dir`, or only those staged for `file`. */
export function removeStaleTempFiles(dir: string, file?: string): void {
  if (!fs.existsSync(dir)) return;
  const prefix = file === undefined ? '.' : `.${path.basename(file)}.`;
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith(prefix) && name.endsWith('.tmp')) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/**
 * Writes all of `data` at the fd's position and returns the byte count: a short write (a disk filling up) is
 * continued, not taken for the whole.
 */
export function writeFully(fd: number, data: string): number {
  const bytes = Buffer.from(data, 'utf8');
  for (let offset = 0; offset < bytes.length; ) {
    const n = fs.writeSync(fd, bytes, offset);
    if (n <= 0) throw new Error(`write made no progress at byte ${offset} of ${bytes.length}`);
    offset += n;
  }
  return bytes.length;
}

/** fsync(2) on a directory: makes a new or renamed name in it durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
