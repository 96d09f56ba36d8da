import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, removeStaleTempFiles, writeFileAtomic } from '../../common/atomic-file.js';
import { storageSetupError, storageWriteError } from '../../common/storage-failure.js';
import { caDirSetup } from './key-store.js';

/**
 * `<data-dir>/ca/first-setup`: present, durably, from before a data dir's first CA key is written until its first CA
 * journal commit. Key files beside an empty journal are then either an interrupted first start (marker present: the
 * data dir never served, so they are swept and the setup starts over) or a datastore that lost its content (no marker:
 * refused, since sweeping would re-root a trust domain in use). It sits beside ca/keys, not in it: a backup that copies
 * ca/keys/ after a snapshot of a server still in its first setup is refused at restore rather than taken for one.
 */
export class FirstSetupMarker {
  readonly file: string;

  /** `caDir`: the directory holding keys/ (the KeyStore creates it). */
  constructor(caDir: string) {
    this.file = path.join(caDir, 'first-setup');
    // A kill between create()'s temp file and its rename leaves one; the KeyStore's sweep covers keys/ only.
    caDirSetup(caDir, () => removeStaleTempFiles(caDir, this.file));
  }

  exists(): boolean {
    return fs.existsSync(this.file);
  }

  /** Fsynced with its directory before it returns: a key written after it must never be on disk without it. */
  create(): void {
    try {
      writeFileAtomic(this.file, 'a first CA setup is under way; removed by its first CA journal commit\n', 0o600);
    } catch (err) {
      throw storageWriteError(err, 'the first-setup marker', path.dirname(this.file));
    }
  }

  /** After the first commit. A crash before the removal is durable leaves it beside a journal, where it means nothing. */
  remove(): void {
    try {
      // unlink, not rmSync: on EPERM rmSync retries the file as a directory and reports that ENOTDIR instead.
      try {
        fs.unlinkSync(this.file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      fsyncDir(path.dirname(this.file));
    } catch (err) {
      // Only ever called once the journal's first commit is made (at that commit, or at a later start finding the
      // marker beside the journal), so the file means nothing now and removing it by hand is safe.
      throw storageSetupError(
        err,
        path.dirname(this.file),
        (cause) =>
          `cannot remove the first-setup marker ${this.file}: ${cause}. The CA journal's first commit is made, so it means ` +
          `nothing any more: remove it by hand, and make ${path.dirname(this.file)} writable (meshid-server writes its CA keys there)`,
      );
    }
  }
}
