import fs from 'node:fs';
import path from 'node:path';

/**
 * File copies a backup and a restore both make. The CA keys are among them: each file is owner-only from its first
 * byte and fsynced before the directory holding it is moved into place, so a kill -9 or power loss after the move
 * never finds a name whose content is not on disk yet.
 */

const COPY_CHUNK_BYTES = 1 << 20;

/**
 * Copies `from` into a new file `to`, 0600 and fsynced; a missing source is `missing()`. In chunks: a datastore may be
 * larger than a Buffer can hold (2 GiB), and one read whole would cost its size in memory.
 */
export function copyPrivateFile(from: string, to: string, missing: () => Error): void {
  let source: number;
  try {
    source = fs.openSync(from, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw missing();
    throw err;
  }
  try {
    const fd = fs.openSync(to, 'wx', 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
      const chunk = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
      for (let read; (read = fs.readSync(source, chunk, 0, chunk.length, null)) > 0; ) {
        // writeSync may write less than asked (a signal, a nearly full disk that still takes part of it).
        for (let written = 0; written < read; ) written += fs.writeSync(fd, chunk, written, read - written);
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.closeSync(source);
  }
}

export function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Every file under `root` (directories descended, not listed), relative to it, sorted, with its size in bytes. */
export function listFiles(root: string, sub = ''): Array<{ path: string; size: number }> {
  const out: Array<{ path: string; size: number }> = [];
  for (const e of fs.readdirSync(path.join(root, sub), { withFileTypes: true })) {
    const rel = path.join(sub, e.name);
    if (e.isDirectory()) out.push(...listFiles(root, rel));
    else out.push({ path: rel, size: fs.statSync(path.join(root, rel)).size });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
