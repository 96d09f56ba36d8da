import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition } from './errors.js';

/**
 * Refuses a directory that another local user could tamper with: one where they could replace the socket or key
 * file inside, or swap a path component for a symlink so that our own mkdir/chmod/bind lands somewhere else. Every
 * component of `dir`, from `/` down, and of every symlink target on the way, must be owned by root or by this
 * process's user, and must not be writable by others unless it has the sticky bit (as /tmp has: then others cannot
 * rename or remove what we own in it). Group write is let through: with user private groups (the common default) a
 * 0775 home holds no one else, and refusing it would stop `npm start` in many a checkout. `dir` itself may not exist yet: its nearest existing ancestor
 * is checked, so nothing we are about to create can be interfered with. Throws MeshidError(failed_precondition)
 * naming the component and `purpose`.
 */
export function assertSafeDirectory(dir: string, purpose: string): void {
  let existing = path.resolve(dir);
  while (!fs.existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  checkChain(existing, purpose, process.geteuid?.() ?? 0);
}

function checkChain(start: string, purpose: string, euid: number): void {
  for (let current = start; ; current = path.dirname(current)) {
    const st = fs.lstatSync(current);
    if (st.uid !== 0 && st.uid !== euid) {
      throw failedPrecondition(
        `${purpose}: ${current} belongs to uid ${st.uid}, so that user could replace what meshid puts under it; ` +
          `use a directory owned by root${euid === 0 ? '' : ` or by uid ${euid}`}, or remove ${current} and let meshid create it`,
      );
    }
    if (st.isSymbolicLink()) {
      checkChain(fs.realpathSync(current), purpose, euid);
    } else if (!st.isDirectory()) {
      throw failedPrecondition(`${purpose}: ${current} is not a directory`);
    } else if ((st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
      throw failedPrecondition(
        `${purpose}: ${current} is writable by other users (mode ${(st.mode & 0o7777).toString(8)}) without the sticky ` +
          `bit, so they could replace what meshid puts under it; chmod o-w ${current}`,
      );
    }
    if (path.dirname(current) === current) return;
  }
}
