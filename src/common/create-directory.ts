import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition } from './errors.js';
import { storageFailureCause } from './storage-failure.js';

/**
 * Creates `dir` and whichever of its parents are missing, each with `mode` (masked by the umask, as mkdir(2) masks
 * it), and returns the first directory it created, or undefined when `dir` was there: fs.mkdirSync's recursive mode,
 * one level at a time. Node's own (Node 20) retries for ever on an ENOENT from a parent that exists, which is how
 * /proc answers every mkdir: a daemon given a path under /proc hung at start without a word. Here a failed mkdir is
 * thrown as it came (its code and path), for directoryCreationError to explain.
 */
export function createDirectory(dir: string, mode: number): string | undefined {
  const missing: string[] = [];
  // Up the path as written, not path.resolve()d: the kernel reads `link/..` as the parent of the link's target, and
  // resolving it by name would make a directory elsewhere than the one the caller then uses.
  for (let d = dir; !fs.existsSync(d) && path.dirname(d) !== d; d = path.dirname(d)) missing.unshift(d);
  // mkdir of something that exists and is no directory throws the EEXIST the recursive mkdir would.
  if (missing.length === 0 && !fs.statSync(dir).isDirectory()) fs.mkdirSync(dir, { mode });
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode });
    } catch (err) {
      // Made meanwhile by another process: as good as made here.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.statSync(d, { throwIfNoEntry: false })?.isDirectory()) throw err;
    }
  }
  return missing[0];
}

/**
 * A directory that could not be created (createDirectory's error), as the operator fixes it: what the directory is
 * for, the setting that named it ("--socket-path, socket_path"), the cause and what to do. Never throws.
 */
export function directoryCreationError(err: unknown, dir: string, purpose: string, setting?: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string') return err;
  const failed = e.path ?? dir;
  const parent = path.dirname(failed);
  const where = `cannot create the ${purpose} ${dir}${setting === undefined ? '' : ` (${setting})`}`;
  switch (e.code) {
    case 'ENOENT':
      return failedPrecondition(
        `${where}: ${parent} does not let directories be created in it (ENOENT: a virtual file system, such as /proc); choose a path on a disk`,
        err,
      );
    case 'EPERM':
      return failedPrecondition(
        `${where}: ${parent} does not let directories be created in it (EPERM: a virtual file system, such as /sys, an immutable directory or a security policy); choose a path on a disk`,
        err,
      );
    case 'ENOTDIR':
    case 'EEXIST':
      return failedPrecondition(`${where}: ${nearestExisting(failed)} is not a directory; move it away or choose another path`, err);
    default: {
      const cause = storageFailureCause(err, parent) ?? e.message;
      return failedPrecondition(`${where}: ${cause}; create it beforehand or choose another path`, err);
    }
  }
}

/** The deepest existing path on the way to `p` (itself, if it exists). */
function nearestExisting(p: string): string {
  for (let d = path.resolve(p); ; d = path.dirname(d)) {
    try {
      fs.lstatSync(d);
      return d;
    } catch {
      // ENOENT, or ENOTDIR below a file: look one level up.
      if (path.dirname(d) === d) return d;
    }
  }
}
