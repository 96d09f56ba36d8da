import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { ensurePrivateDir, removeStaleTempFiles, writeFileAtomic } from '../../common/atomic-file.js';
import { failedPrecondition } from '../../common/errors.js';
import { storageSetupError, storageWriteError } from '../../common/storage-failure.js';
import { exportPkcs8Pem, importPrivateKey } from '../../common/x509/keys.js';

const KEY_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Runs a start-up step on `dir` (ca/ or ca/keys/), turning a storage failure (a read-only mount, a directory not
 * meshid's to change) into one that names the directory and what to do, rather than a bare EROFS from a chmod.
 */
export function caDirSetup(dir: string, step: () => void): void {
  try {
    step();
  } catch (err) {
    throw storageSetupError(
      err,
      dir,
      (cause) =>
        `cannot use the CA directory ${dir}: ${cause}. meshid-server writes its CA keys and first-setup marker there at ` +
        'start and at every rotation: make it writable (the whole data dir must be on writable storage)',
    );
  }
}

/**
 * CA private keys on disk: one PKCS#8 PEM file per key under <data-dir>/ca/keys (directory 0700, files 0600), written
 * atomically. A key file is always written before the journal row that references it, so after a crash a key may be
 * orphaned (removed at the next start) but a journal row never points at a half-written key.
 */
export class KeyStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'ca', 'keys');
    const caDir = path.dirname(this.dir);
    // Each step against its own directory: the cause of a permission failure is read from the one that refused.
    caDirSetup(caDir, () => ensurePrivateDir(caDir));
    caDirSetup(this.dir, () => {
      ensurePrivateDir(this.dir);
      removeStaleTempFiles(this.dir);
    });
  }

  fileOf(keyId: string): string {
    if (!KEY_ID_RE.test(keyId)) throw failedPrecondition(`invalid CA key id "${keyId}"`);
    return path.join(this.dir, `${keyId}.pem`);
  }

  write(keyId: string, key: KeyObject): void {
    try {
      writeFileAtomic(this.fileOf(keyId), exportPkcs8Pem(key), 0o600);
    } catch (err) {
      throw storageWriteError(err, 'a CA key', this.dir);
    }
  }

  /** Reads a key; a missing or unreadable file stops the server with a message that says what to do. */
  read(keyId: string): KeyObject {
    const file = this.fileOf(keyId);
    let pem: string;
    try {
      pem = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw failedPrecondition(
        `CA key file ${file} is ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable'}: ` +
          'restore it from a backup of the data dir, or start with an empty data dir to create a new trust domain',
      );
    }
    try {
      return importPrivateKey(pem);
    } catch (err) {
      throw failedPrecondition(`CA key file ${file} is corrupt: ${(err as Error).message}`, err);
    }
  }

  delete(keyId: string): void {
    fs.rmSync(this.fileOf(keyId), { force: true });
  }

  list(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((n) => n.endsWith('.pem') && !n.startsWith('.'))
      .map((n) => n.slice(0, -'.pem'.length));
  }
}
