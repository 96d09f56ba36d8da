import fs from 'node:fs';
import { failedPrecondition } from '../../common/errors.js';

/** What a directory was when it was checked: the inode every later write must land in. */
export interface DirectoryIdentity {
  dev: number;
  ino: number;
}

export function identityOf(st: fs.Stats): DirectoryIdentity {
  return { dev: st.dev, ino: st.ino };
}

/**
 * A directory held open, so that the files a backup makes go into the very inode that was checked, whatever its path
 * names meanwhile. Node has no openat(2), mkdirat(2) or renameat(2); Linux's /proc/self/fd/<fd> stands in for them:
 * a path through it resolves to the open directory itself, not to whatever its name was swapped for (a symlink to
 * another user's directory, say) between the check and the write. Only the last component is looked up by name, in
 * that directory.
 */
export class AnchoredDirectory {
  private constructor(
    readonly fd: number,
    /** The path it was opened by, for messages. */
    readonly shownAs: string,
  ) {}

  /**
   * Opens `dir` without following a symbolic link in its last component, and refuses it unless it is still the
   * directory `expected` was taken from (`changed` names what to do). Components above `dir` are not re-checked:
   * whatever they name meanwhile, the directory held open is the one checked.
   */
  static open(dir: string, expected: DirectoryIdentity, changed: () => Error): AnchoredDirectory {
    let fd: number;
    try {
      fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ELOOP: a symbolic link now; ENOTDIR: a file, or a link somewhere on the way; ENOENT: gone.
      if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT') throw changed();
      throw err;
    }
    const anchored = new AnchoredDirectory(fd, dir);
    try {
      const st = fs.fstatSync(fd);
      if (st.dev !== expected.dev || st.ino !== expected.ino) throw changed();
      anchored.assertProcMounted();
    } catch (err) {
      anchored.close();
      throw err;
    }
    return anchored;
  }

  /**
   * Makes the directory `name` in this one (0700, whatever the umask) and holds it open in turn. mkdir and open are
   * two lookups of `name`: whoever may rename in this directory (a group-writable parent) could put a directory of
   * their own there in between, so the one opened must be this process's user's and empty (`changed` otherwise).
   */
  makePrivateDir(name: string, changed: () => Error): AnchoredDirectory {
    fs.mkdirSync(this.at(name), { mode: 0o700 });
    const fd = fs.openSync(this.at(name), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    const made = new AnchoredDirectory(fd, `${this.shownAs}/${name}`);
    try {
      const st = fs.fstatSync(fd);
      if (st.uid !== (process.geteuid?.() ?? st.uid) || fs.readdirSync(made.here).length > 0) throw changed();
      fs.fchmodSync(fd, 0o700);
    } catch (err) {
      made.close();
      throw err;
    }
    return made;
  }

  /** Whether `name` in this directory is the directory `other` holds open (not one put in its place by name). */
  holds(name: string, other: AnchoredDirectory): boolean {
    const st = fs.lstatSync(this.at(name), { throwIfNoEntry: false });
    const held = fs.fstatSync(other.fd);
    return st !== undefined && st.dev === held.dev && st.ino === held.ino;
  }

  /** A path that names `name` in this directory, as held open (never through a link swapped in for it). */
  at(name: string): string {
    return `${this.here}/${name}`;
  }

  /** A path that names this directory, as held open. */
  get here(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  fsync(): void {
    fs.fsyncSync(this.fd);
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  /** Without /proc the paths above name nothing: say so, rather than fail on the first file with ENOENT. */
  private assertProcMounted(): void {
    if (!fs.existsSync(this.here)) {
      throw failedPrecondition(`cannot write the backup into ${this.shownAs}: /proc is not mounted, which the server needs to write it`);
    }
  }
}
